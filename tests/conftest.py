"""Shared test helpers: the real CLI in a subprocess, run records read back, the shared data root."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def records_under(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(root).rglob("run.json"))]


def only_record(root: Path) -> dict:
    records = records_under(root)
    assert len(records) == 1, f"expected one run record under {root}, found {len(records)}"
    return records[0]
