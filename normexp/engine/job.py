"""One training job without Hydra: check the run dir → build task, norms and model → train → write the record.

The CLI composes the config and hands down two views of it: ``config``, the resolved plain dict (stored in the
record, compared on resume) and ``objects``, the same settings as dataclasses (task, model, norm, optim, trainer,
logger, seed, name, profile). Re-running a job whose run dir holds a finished record does nothing (completed and
diverged are results); an unfinished one resumes from its last checkpoint (``trainer.resume=auto``);
``trainer.resume=restart`` sets the old run aside (``rundir.set_aside``) and starts over. One process at a time owns a
run dir (``rundir.owned``).
"""
from __future__ import annotations

import logging
import os
import random
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from normexp.engine import distributed
from normexp.engine.cpu_memory import keep_freed_memory
from normexp.engine.loggers import ConsoleLogger, WandbLogger
from normexp.engine.rundir import owned, set_aside
from normexp.engine.trainer import Interrupted, Trainer
from normexp.norms import norm_factory, resolved_options
from normexp.norms.dispatch import impl_counts
from normexp.records import RECORD_NAME, RunRecord, git_commit, package_versions, read_record
from normexp.tasks.registry import task_class

log = logging.getLogger("normexp")
FINAL = ("completed", "diverged")
# Settings that do not change a run's result: a resumed or re-run job may differ in these. (The CLI also keeps them
# out of the run folder's name.)
RESULT_NEUTRAL_KEYS = ("trainer.progress", "trainer.device", "trainer.resume", "trainer.threads",
                       "trainer.log_every_steps", "logger", "norm.impl")


class JobFailed(RuntimeError):
    """A job failed after its record was written: the record holds the traceback (``record_path``)."""

    def __init__(self, cause: BaseException, record_path: Path):
        super().__init__(str(cause) or type(cause).__name__)
        self.record_path = record_path


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the result-neutral keys."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    for key in RESULT_NEUTRAL_KEYS:
        group, _, leaf = key.partition(".")
        if not leaf:
            out.pop(group, None)
        elif isinstance(out.get(group), dict):
            out[group].pop(leaf, None)
    return out


def previous_record(run_dir: Path, config: dict[str, Any]) -> RunRecord | None:
    """The record already in ``run_dir``, if any; refuses one that ran another config."""
    path = run_dir / RECORD_NAME
    if not path.is_file():
        return None
    previous = read_record(path)
    if comparable(previous.config) != comparable(config):
        changed = sorted(k for k in set(comparable(config)) | set(comparable(previous.config))
                         if comparable(config).get(k) != comparable(previous.config).get(k))
        raise ValueError(f"{run_dir} already holds a run with another config (differs in: {', '.join(changed)}). "
                         "Choose another experiment name (name=...) or output root (out_root=...), or start over "
                         "there with trainer.resume=restart (the old run is kept in previous-<time>/).")
    return previous


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def prepare_process(trainer_cfg, seed: int, record: RunRecord) -> torch.device:
    """Device, threads, allocator and seeds: everything about the process that must precede building the model."""
    device = distributed.setup(trainer_cfg.device)
    if trainer_cfg.threads > 0:
        torch.set_num_threads(trainer_cfg.threads)
    if device.type == "cpu":
        record.extra["cpu_allocator"] = keep_freed_memory()
    seed_everything(seed, trainer_cfg.deterministic)
    return device


def build(objects, device: torch.device, record: RunRecord) -> tuple[Any, torch.nn.Module, list]:
    """The task and its model with every norm site built from ``objects.norm``; the sites are returned too."""
    build_site = norm_factory(objects.norm)
    sites: list = []

    def norm(dim: int):  # every norm site the model builds, counted and kept for the grad-stats hook
        sites.append(build_site(dim))
        return sites[-1]

    task = task_class(objects.task.name)(objects.task, objects.model, objects.seed)
    record.primary_metric, record.higher_is_better = task.primary_metric, task.higher_is_better
    record.data = task.describe()
    model = task.build_model(norm).to(device)
    record.extra.update(parameters=sum(p.numel() for p in model.parameters()), norm_sites=len(sites),
                        world_size=distributed.world_size(), device=str(device))
    record.extra["norm"] = resolved_options(objects.norm)  # exactly which norm ran: C, k, eps and its placement, ...
    return task, model, sites


def make_logger(objects, config: dict, run_dir: Path, resumed_state: dict | None):
    if objects.logger.name == "console":
        return ConsoleLogger()
    if objects.logger.name != "wandb":
        raise ValueError(f"logger.name={objects.logger.name!r} is not valid: choose console or wandb")
    return WandbLogger(objects.logger, run_dir, f"{objects.task.name}-{objects.norm.name}-s{objects.seed}",
                       group=objects.logger.group or objects.name, config=config, job_type=objects.profile,
                       run_id=(resumed_state or {}).get("wandb_id"))


def run_job(config: dict[str, Any], objects, run_dir: Path) -> RunRecord:
    """Runs (or resumes, or skips) one training job in ``run_dir`` and returns its record. Raises ``RunDirBusy`` at
    once when another live process owns ``run_dir``."""
    if not distributed.is_main():  # rank 0 owns the run dir for every rank
        return _run_job(config, objects, run_dir)
    with owned(run_dir):
        if objects.trainer.resume == "restart" and (aside := set_aside(run_dir)) is not None:
            log.warning("trainer.resume=restart: the previous run of %s is kept in %s", run_dir, aside)
        return _run_job(config, objects, run_dir)


def _run_job(config: dict[str, Any], objects, run_dir: Path) -> RunRecord:
    previous = previous_record(run_dir, config)
    if previous is not None and previous.status in FINAL:
        log.info("%s: already %s, nothing to do", run_dir, previous.status)
        return previous
    record = RunRecord(task=objects.task.name, model=objects.model.name, norm=objects.norm.name, seed=objects.seed,
                       name=objects.name, profile=objects.profile, config=config, versions=package_versions(),
                       git_commit=git_commit(), wall_time_s=previous.wall_time_s if previous else 0.0)
    started, logger, sites = time.perf_counter(), None, []
    try:
        if distributed.is_main():
            record.save(run_dir)  # fails early, before any work, when the run dir is not writable
        device = prepare_process(objects.trainer, objects.seed, record)
        task, model, sites = build(objects, device, record)
        trainer = Trainer(task, model, objects.optim, objects.trainer, run_dir, record, ConsoleLogger(), sites)
        resumed = objects.trainer.resume == "auto" and trainer.resume()
        if resumed:
            log.info("resumed from step %d (epoch %d)", trainer.progress.step, trainer.progress.epoch + 1)
        if distributed.is_main():
            state = trainer.checkpoints.latest() if resumed else None
            logger = trainer.logger = make_logger(objects, config, run_dir, state)
        trainer.fit()
    except Interrupted as e:
        record.status, record.error = "interrupted", str(e)
        raise
    except KeyboardInterrupt as e:  # Ctrl-C outside the loop's handler (building, or a second Ctrl-C): no new checkpoint
        record.status = "interrupted"
        record.error = "SIGINT: stopped at once, no new checkpoint; rerun the same command to resume from the last one"
        raise Interrupted(record.error, code=130) from e
    except Exception as e:
        record.status, record.error = "failed", traceback.format_exc()
        raise JobFailed(e, run_dir / RECORD_NAME) from e
    finally:
        record.wall_time_s = round(record.wall_time_s + time.perf_counter() - started, 3)
        record.extra["norm_impls"] = impl_counts(sites)  # which implementation each norm site ran (dispatch.py)
        if distributed.is_main():
            record.save(run_dir)
        if logger is not None:
            logger.summary(record)
            logger.finish(record.status)
    return record
