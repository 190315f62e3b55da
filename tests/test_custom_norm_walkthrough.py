"""docs/custom_norm.md, performed: its files written into a folder outside the repository, its commands run with the
real CLI, and the user's norms found as their own rows of the regenerated Table 3. A bad target fails first."""
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, records_under, run_cli

DOC = REPO / "docs" / "custom_norm.md"
BLOCK = re.compile(r"<!-- walkthrough: (file (?P<path>\S+)|run) -->\n```\w*\n(?P<body>.*?)```", re.S)
# The doc's entry points, as the installed console scripts would run them from this checkout.
SHIMS = f"""
normexp-train() {{ PYTHONPATH="$PYTHONPATH:{REPO}" {shlex.quote(sys.executable)} -m normexp.cli.train "$@" trainer.progress=false; }}
normexp-table() {{ PYTHONPATH="$PYTHONPATH:{REPO}" {shlex.quote(sys.executable)} -m normexp.cli.table "$@"; }}
"""


def walkthrough() -> list[tuple[str, str, str]]:
    steps = [("run" if m["path"] is None else "file", m["path"], m["body"]) for m in BLOCK.finditer(DOC.read_text())]
    assert [kind for kind, _, _ in steps] == ["file", "run", "file", "run", "run"], steps
    return steps


def test_the_walkthrough_puts_the_users_norms_into_table3(tmp_path):
    user = tmp_path / "mynorms"  # outside the repository: nothing of the user's is inside normexp
    user.mkdir()
    script = [SHIMS, "set -e"]
    for kind, path, body in walkthrough():
        if kind == "file":
            (user / path).parent.mkdir(parents=True, exist_ok=True)
            (user / path).write_text(body)
        else:
            script.append(body)
    proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=user, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    records = {r["norm"]: r for r in records_under(user / "runs")}
    assert set(records) == {"L1LayerNorm", "l1norm_wide"}
    assert all(r["status"] == "completed" and r["extra"]["norm_sites"] > 0 for r in records.values())
    assert records["L1LayerNorm"]["config"]["norm"]["target"] == "l1norm.L1LayerNorm"
    assert records["l1norm_wide"]["config"]["norm"]["options"] == {"eps": 1.0}  # two variants of one class, apart
    table = (user / "runs" / "tables" / "tiny" / "adanorm_table3.md").read_text()
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert {"LayerNorm", "AdaNorm", "L1-LayerNorm", "L1-LayerNorm (eps 1)"} <= set(rows)
    for label, norm in (("L1-LayerNorm", "L1LayerNorm"), ("L1-LayerNorm (eps 1)", "l1norm_wide")):
        uas = records[norm]["test"]["uas"]
        assert rows[label].rstrip(" |").endswith(f"| {uas:.2f} (n=1) / –"), rows[label]  # the PTB cell
    speed = (user / "runs" / "tables" / "tiny" / "adanorm_table3_speed.md").read_text()
    assert "| L1-LayerNorm |" in speed
    assert (user / "runs" / "tables" / "tiny" / "plots" / "adanorm_table3" / "ptb-convergence.png").is_file()


BAD = """
import torch
from torch import nn

def not_a_module(dim):
    return torch.ones(dim)

class FixedWidth(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(512))

    def forward(self, x):
        return x * self.weight
"""


@pytest.mark.parametrize("target, message", [
    ("nosuchpkg.norms.MyNorm", "cannot import module 'nosuchpkg.norms'"),
    ("badnorms.not_a_module", "returned 'Tensor', not an nn.Module"),
    ("badnorms.FixedWidth", "built at width 64, its forward on a (2, 3, 64) input failed"),
])
def test_a_bad_target_fails_before_any_run_folder(tmp_path, target, message):
    (tmp_path / "badnorms.py").write_text(BAD)
    out = tmp_path / "out"
    proc = run_cli("experiment=tiny/ptb", "norm=custom", f"norm.target={target}", f"out_root={out}", check=False,
                   env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and lines == [f"Error: norm.target={target}: " + lines[0].split(": ", 2)[2]], proc.stderr
    assert message in lines[0]
    assert not out.exists()  # no run folder, no record


def test_in_a_sweep_every_norm_is_checked_before_the_first_folder(tmp_path):
    (tmp_path / "badnorms.py").write_text(BAD)
    (tmp_path / "conf" / "norm").mkdir(parents=True)
    (tmp_path / "conf" / "norm" / "fixed.yaml").write_text(
        "defaults:\n  - norm_schema\n  - _self_\nname: fixed\ntarget: badnorms.FixedWidth\n")
    out = tmp_path / "out"
    proc = run_cli("-m", "experiment=tiny/ptb", "norm=layernorm,fixed", "seed=1,2", f"out_root={out}",
                   f"hydra.searchpath=[file://{tmp_path / 'conf'}]", check=False,
                   env={"PYTHONPATH": f"{tmp_path}:{REPO}"})
    assert proc.returncode == 2 and "Error: norm.target=badnorms.FixedWidth: built at width 64" in proc.stderr
    assert not out.exists()


GOOD = """
import torch
from torch import nn

class MeanAbsNorm(nn.Module):
    def __init__(self, dim, alpha=1e-5):
        super().__init__()
        self.alpha = alpha
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        c = x - x.mean(-1, keepdim=True)
        return self.gain * c / (c.abs().mean(-1, keepdim=True) + self.alpha)
"""


def test_a_custom_norm_run_resumes_to_the_same_result(tmp_path):
    """A run killed after a mid-run checkpoint (its later checkpoints gone, its record still running) resumes to the
    uninterrupted result, bit for bit: the custom norm's parameters travel in the checkpoint like any others."""
    (tmp_path / "usernorms.py").write_text(GOOD)
    run = ("experiment=tiny/ptb", "norm=custom", "norm.target=usernorms.MeanAbsNorm", "norm.options={alpha: 0.1}",
           "trainer.checkpoint_every_steps=2", "trainer.deterministic=true", "trainer.progress=false")
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}"}
    run_cli(*run, f"out_root={tmp_path / 'out'}", env=env)
    record_path = next((tmp_path / "out").rglob("run.json"))
    checkpoints = sorted(record_path.parent.glob("checkpoints/step-*.pt"))
    assert len(checkpoints) >= 2
    for later in checkpoints[1:]:
        later.unlink()
    (record_path.parent / "checkpoints" / "best.pt").unlink()
    record = json.loads(record_path.read_text())
    straight = dict(record)
    record.update(status="running", test={})
    record_path.write_text(json.dumps(record))
    proc = run_cli(*run, f"out_root={tmp_path / 'out'}", env=env)
    assert "resumed from step 2" in proc.stdout + proc.stderr
    resumed = json.loads(record_path.read_text())
    assert resumed["norm"] == "MeanAbsNorm" and resumed["status"] == "completed"
    assert resumed["test"] == straight["test"] and resumed["curves"] == straight["curves"]
