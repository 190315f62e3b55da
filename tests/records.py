"""Run records built by hand for the table, statistics, claims, plot and W&B tests: no training needed."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from normexp.norms import NormConfig, resolved_options
from normexp.records import RunRecord


# What the AdaNorm tables' columns filter on: the MNIST CNN, every norm replaced in the fairseq models.
PAPER_MODEL = {"name": "cnn", "norm_sites": "all"}


def make_record(task: str, norm: str, seed: int, value: Optional[float] = None, *, metric: str = "accuracy",
                status: str = "completed", profile: str = "tiny", steps_per_s: float = 10.0,
                train_losses: tuple = (1.0, 0.5), valid_losses: tuple = (1.1, 0.9), grad_stats: Optional[list] = None,
                config: Optional[dict] = None, name: str = "test") -> RunRecord:
    """A record of a run of ``task`` with ``norm`` and ``seed``: test ``metric`` = ``value`` (when completed), one
    train/valid loss per epoch of 100 steps, and (optionally) grad stats as the trainer's hook records them. ``name``:
    the experiment name (a column's ``names:`` may filter on it)."""
    train = [{"epoch": e, "step": 100 * (e + 1), "loss": v} for e, v in enumerate(train_losses)]
    valid = [{"epoch": e, "step": 100 * (e + 1), "loss": v} for e, v in enumerate(valid_losses)]
    rec = RunRecord(task=task, model="m", norm=norm, seed=seed, name=name, profile=profile,
                    config=config or {"task": {"name": task}, "model": PAPER_MODEL, "trainer": {"device": "cpu"}}, status=status,
                    primary_metric=metric, test={metric: value} if status == "completed" and value is not None else {},
                    curves={"train_loss": train, "valid": valid}, steps=100 * len(train_losses),
                    steps_per_s=steps_per_s, host="testhost")
    rec.extra["norm"] = resolved_options(NormConfig(name=norm))  # as engine/job.py records it (C = 1 for adanorm)
    if grad_stats is not None:
        rec.extra["grad_stats"] = grad_stats
    return rec


def save_records(root: Path, records: list[RunRecord]) -> Path:
    for i, rec in enumerate(records):
        rec.save(Path(root) / f"{rec.task}-{rec.norm}-s{rec.seed}-{i}")
    return Path(root)
