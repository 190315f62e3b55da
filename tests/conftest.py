"""Shared test helpers: the real CLI in a subprocess, run records read back, the shared data root."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

# Triton's interpreter runs the GPU kernels on CPU tensors (tests/norms/test_norms_triton.py). It must be on before
# triton is first imported by anything (a test module collected earlier, torch.compile): set later, the kernels'
# nested @triton.jit helpers refuse to run ("Cannot call @triton.jit'd outside of the scope of a kernel"). It changes
# nothing else: impl=auto never picks Triton for a CPU tensor.
os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _data_root():
    """Tests read the real datasets from NORMEXP_DATA_ROOT (CI: ../shared/data); downloads never land in the repo."""
    # Absolute, so subprocesses run from another folder (the wheel test) find it too; CI passes it relative.
    os.environ["NORMEXP_DATA_ROOT"] = str(Path(os.environ.get("NORMEXP_DATA_ROOT", SHARED_DATA)).resolve())
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    yield


def run_cli(*overrides: str, module: str = "normexp.cli.train", check: bool = True, env: dict | None = None,
            timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m <module> <overrides>`` in a subprocess, as a user would type it."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run([sys.executable, "-m", module, *overrides], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd or REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-6000:]}")
    return proc


def wait_for(root: Path, pattern: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Waits until a file matching ``pattern`` exists under ``root`` while ``proc`` (a started run) is still alive."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if list(Path(root).rglob(pattern)):
            return
        assert proc.poll() is None, f"the run ended before {pattern} appeared:\n{proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"{pattern} never appeared")


def records_under(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(root).rglob("run.json"))]


def only_record(root: Path) -> dict:
    records = records_under(root)
    assert len(records) == 1, f"expected one run record under {root}, found {len(records)}"
    return records[0]
