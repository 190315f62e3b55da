"""``normexp-train``: compose the config → build task, norm and model → run the one trainer → write the run record.

Hydra stops here: below this file everything is plain dataclasses and objects. Re-running a command whose run dir
holds a finished record does nothing (completed and diverged are results); an unfinished one resumes from its last
checkpoint (``trainer.resume=auto``). In a multirun a failing job is recorded ``failed`` and the sweep goes on.
"""
from __future__ import annotations

import logging
import os
import random
import time
import traceback
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from normexp import distributed
from normexp.config import register_configs
from normexp.cpu_memory import keep_freed_memory
from normexp.loggers import ConsoleLogger, WandbLogger
from normexp.norms import norm_factory
from normexp.registry import task_class
from normexp.runs import RECORD_NAME, RunRecord, git_commit, package_versions, read_record
from normexp.trainer import Interrupted, Trainer

log = logging.getLogger("normexp")
FINAL = ("completed", "diverged")
# Settings that do not change a run's result: a resumed or re-run job may differ in these.
VOLATILE = {"trainer": ("progress", "device", "resume", "threads", "log_every_steps"), "logger": None}

register_configs()


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in config.items() if not (k in VOLATILE and VOLATILE[k] is None)}
    for group, keys in VOLATILE.items():
        if keys and isinstance(out.get(group), dict):
            out[group] = {k: v for k, v in out[group].items() if k not in keys}
    return out


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def forget_fairseq_configs() -> None:
    """Removes what ``import fairseq`` puts into Hydra's global ConfigStore.

    fairseq registers its dataclasses there at import time, among them a primary ``config`` (FairseqConfig) and
    options in groups named ``model`` and ``task``. In a Hydra multirun the next job's config would then be composed
    with fairseq's ``config`` as its schema and fail. Entries are recognised by their dataclass's module, so this works
    whenever fairseq was imported; it is idempotent and cheap.

    It lives here, with Hydra, so that tasks need not know Hydra exists: ``run`` calls it after every job (whatever
    the job imported of fairseq, model building and beam search included), before the next job is composed.
    """

    def prune(group: dict) -> None:
        for key in list(group):
            entry = group[key]
            if isinstance(entry, dict):
                had = bool(entry)
                prune(entry)
                if had and not entry:
                    del group[key]
                continue
            try:
                kind = OmegaConf.get_type(entry.node)
            except Exception:  # noqa: BLE001 - not a structured config: not fairseq's dataclass
                continue
            if getattr(kind, "__module__", "").startswith("fairseq"):
                del group[key]

    prune(ConfigStore.instance().repo)


def make_logger(cfg: DictConfig, run_dir: Path, resumed_state: dict | None):
    if cfg.logger.name == "wandb":
        run_name = f"{cfg.task.name}-{cfg.norm.name}-s{cfg.seed}"
        return WandbLogger(cfg.logger, run_dir, run_name, group=cfg.logger.group or cfg.name,
                           config=OmegaConf.to_container(cfg, resolve=True), job_type=cfg.profile,
                           run_id=(resumed_state or {}).get("wandb_id"))
    if cfg.logger.name != "console":
        raise ValueError(f"logger.name={cfg.logger.name!r} is not valid: choose console or wandb")
    return ConsoleLogger()


def run(cfg: DictConfig, run_dir: Path) -> RunRecord:
    """Runs (or resumes, or skips) one training job in ``run_dir`` and returns its record."""
    config = OmegaConf.to_container(cfg, resolve=True)
    existing = run_dir / RECORD_NAME
    if existing.is_file():
        previous = read_record(existing)
        if comparable(previous.config) != comparable(config):
            raise ValueError(
                f"{run_dir} already holds a run with a different config. Choose another experiment name (name=...) "
                f"or output root (out_root=...), or delete that folder to replace the run."
            )
        if previous.status in FINAL:
            log.info("%s: already %s, nothing to do", run_dir, previous.status)
            return previous
        carried_wall_time = previous.wall_time_s
    else:
        carried_wall_time = 0.0
    objects = OmegaConf.to_object(cfg)
    record = RunRecord(task=cfg.task.name, model=cfg.model.name, norm=cfg.norm.name, seed=cfg.seed, name=cfg.name,
                       profile=cfg.profile, config=config, versions=package_versions(), git_commit=git_commit(),
                       wall_time_s=carried_wall_time)
    started = time.perf_counter()
    logger = None
    try:
        main = distributed.is_main()
        if main:
            record.save(run_dir)  # fails early, before any work, when the run dir is not writable
        device = distributed.setup(cfg.trainer.device)
        if cfg.trainer.threads > 0:
            torch.set_num_threads(cfg.trainer.threads)
        if device.type == "cpu":
            record.extra["cpu_allocator"] = keep_freed_memory()
        seed_everything(cfg.seed, cfg.trainer.deterministic)
        build_norm_site = norm_factory(objects.norm)
        sites: list = []

        def norm(dim: int):  # every norm site the model builds, counted and kept for the grad-stats hook
            sites.append(build_norm_site(dim))
            return sites[-1]

        task = task_class(cfg.task.name)(objects.task, objects.model, cfg.seed)
        record.primary_metric, record.higher_is_better = task.primary_metric, task.higher_is_better
        record.data = task.describe()
        model = task.build_model(norm).to(device)
        record.extra.update(parameters=sum(p.numel() for p in model.parameters()), norm_sites=len(sites),
                            world_size=distributed.world_size(), device=str(device))
        trainer = Trainer(task, model, objects.optim, objects.trainer, run_dir, record, ConsoleLogger(), sites)
        resumed = cfg.trainer.resume == "auto" and trainer.resume()
        if resumed:
            log.info("resumed from step %d (epoch %d)", trainer.progress.step, trainer.progress.epoch)
        if main:
            logger = trainer.logger = make_logger(cfg, run_dir, trainer.checkpoints.latest() if resumed else None)
        trainer.fit()
    except Interrupted as e:
        record.status, record.error = "interrupted", str(e)
        raise SystemExit(143) from e
    except Exception:
        record.status, record.error = "failed", traceback.format_exc()
        raise
    finally:
        forget_fairseq_configs()  # a machine-translation job imported fairseq: keep it out of the next job's config
        record.wall_time_s = round(record.wall_time_s + time.perf_counter() - started, 3)
        if distributed.is_main():
            record.save(run_dir)
        if logger is not None:
            logger.summary(record)
            logger.finish(record.status)
    return record


@hydra.main(version_base="1.3", config_path=str(Path(__file__).resolve().parents[1] / "conf"), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Returns the best valid primary metric, so that a Hydra sweeper can optimise it."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        record = run(cfg, run_dir)
    except Exception as e:
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        log.error("job failed (recorded in %s): %s", run_dir / RECORD_NAME, e)  # the sweep goes on
        return None
    log.info("%s: %s, best valid %s, test %s", run_dir, record.status, record.best_valid, record.test)
    return record.best_valid.get(record.primary_metric)


if __name__ == "__main__":
    # Run the importable ``normexp.train.main``, not this ``__main__`` copy: launchers that pickle the job (joblib,
    # submitit) then pickle a reference to it instead of this module's globals.
    from normexp.train import main as importable_main

    importable_main()
