"""The run record: ``run.json`` in each run dir, the single source of truth for tables and plots.

Written atomically (temp file + rename) at the start, after every evaluation and at the end, so a killed run leaves a
readable record of everything it finished. Statuses: running, completed, diverged, failed, interrupted.
"""
from __future__ import annotations

import json
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from normexp.atomic import atomic_write_text

RECORD_NAME = "run.json"
SET_ASIDE_PREFIX = "previous-"  # <run_dir>/previous-<time>/: a run set aside by trainer.resume=restart, not a result
STATUSES = ("running", "completed", "diverged", "failed", "interrupted")
PACKAGES = ("torch", "hydra-core", "omegaconf", "numpy", "sacrebleu", "wandb", "ve-fairseq")


@dataclass
class RunRecord:
    task: str
    model: str
    norm: str
    seed: int
    name: str  # the experiment name
    profile: str
    config: dict[str, Any]
    status: str = "running"
    primary_metric: str = ""
    higher_is_better: bool = True
    best_valid: dict[str, float] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    best_epoch: int | None = None  # epochs are numbered from 1 here, in curves, logs and W&B
    best_step: int | None = None
    curves: dict[str, list] = field(default_factory=lambda: {"train_loss": [], "valid": []})
    steps: int = 0
    epochs_done: int = 0
    wall_time_s: float = 0.0
    train_time_s: float = 0.0
    steps_per_s: float = 0.0
    units_per_s: float = 0.0  # examples or tokens per second of training, as the task counts them
    diverged_at_step: int | None = None
    error: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    host: str = field(default_factory=platform.node)

    def save(self, run_dir: Path) -> None:
        atomic_write_text(Path(run_dir) / RECORD_NAME, json.dumps(asdict(self), indent=1, default=str))


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit() -> str | None:
    """The commit of the code that ran, with '+dirty' when the working tree had changes."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


class RecordError(ValueError):
    """A run.json that is not a record (edited by hand, truncated by a full disk); the message names the file."""


def read_record(path: Path) -> RunRecord:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        known = RunRecord.__dataclass_fields__
        return RunRecord(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError) as e:  # invalid JSON, or JSON without a record's fields
        raise RecordError(f"{path} is not a valid run record ({type(e).__name__}: {e}). Restore it, or move its run "
                          "folder out of the results tree (a rerun with trainer.resume=restart sets it aside)") from e


def find_records(root: Path) -> Iterator[tuple[Path, RunRecord]]:
    """Every run record under ``root`` (any depth), with its run dir; runs set aside (``previous-*``) are not."""
    for path in sorted(Path(root).rglob(RECORD_NAME)):
        if not any(part.startswith(SET_ASIDE_PREFIX) for part in path.relative_to(root).parts[:-1]):
            yield path.parent, read_record(path)
