"""A non-editable install works from any folder: the wheel ships conf/ and every entry point finds it.

The wheel is built from this checkout and installed without its dependencies into a fresh venv, which borrows the
test environment's packages (torch, Hydra, ...) through a path entry placed after its own site-packages, so the
wheel's normexp is the one imported. Everything then runs from a folder outside the repository.
"""
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def sh(*cmd, cwd, env=None, timeout=600):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp / "dist", REPO, cwd=tmp)
    wheel = next((tmp / "dist").glob("normexp-*.whl"))
    venv = tmp / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    sh(sys.executable, "-m", "pip", "--python", venv / "bin/python", "install", "-q", "--no-deps", "--no-index",
       wheel, cwd=tmp)
    site = Path(sh(venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                   cwd=tmp).strip())
    (site / "zz_borrowed_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp / "elsewhere"
    work.mkdir()
    return venv / "bin", work


def test_the_installed_package_imports_from_anywhere(installed):
    bin_dir, work = installed
    out = sh(bin_dir / "python", "-c", "import normexp, normexp.cli; print(normexp.__version__, normexp.__file__, "
             "normexp.cli.conf_dir())", cwd=work).split()
    assert out[0].count(".") == 2
    assert str(REPO) not in out[1] and str(REPO) not in out[2]
    assert Path(out[2], "config.yaml").is_file()


def test_installed_entry_points_train_and_build_a_table(installed):
    bin_dir, work = installed
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    assert "norm: " in sh(bin_dir / "normexp-train", "--help", cwd=work, env=env)
    sh(bin_dir / "normexp-train", "experiment=tiny/ptb", "trainer.max_epochs=1", "trainer.progress=false",
       "out_root=runs", cwd=work, env=env)
    record = json.loads(next((work / "runs").rglob("run.json")).read_text())
    assert record["status"] == "completed" and record["test"]["uas"] > 0
    sh(bin_dir / "normexp-table", "table=adanorm_table3", "root=runs", "plots=false", cwd=work, env=env)
    table = (work / "runs" / "tables" / "tiny" / "adanorm_table3.md").read_text()  # tiny/ptb: the tiny profile
    assert "PTB" in table
    dry = sh(bin_dir / "normexp-reproduce", "table=adanorm_table1", "profile=tiny", "dry_run=true", cwd=work, env=env)
    assert "normexp" in dry
