"""``normexp-train``: compose the config, hand it to the one job (``normexp.engine.job``), report its outcome.

Hydra stops here: below this package everything is plain dataclasses and objects. A failure ends a run with one line
on stderr (the traceback is in its run.json) and exit code 1; SIGINT/SIGTERM with 130/143 after a checkpoint. In a
multirun a failing job is recorded ``failed`` and the sweep goes on; the sweep then ends with a summary of its jobs
and exit code 1 when any failed (``callbacks.py``).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from normexp.cli import conf_dir
from normexp.atomic import atomic_write_text
from normexp.cli.callbacks import OUTCOMES_ENV, job_config
from normexp.cli.checks import check_config
from normexp.cli.config import register_configs
from normexp.engine.distributed import is_main
from normexp.engine.job import JobFailed, run_job
from normexp.engine.trainer import Interrupted
from normexp.records import RunRecord

log = logging.getLogger("normexp")
register_configs()


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


def run(cfg: DictConfig, run_dir: Path) -> RunRecord:
    """The job for a composed config: plain dict and dataclasses handed down, fairseq's configs pruned after."""
    try:
        return run_job(OmegaConf.to_container(cfg, resolve=True), OmegaConf.to_object(cfg), run_dir)
    finally:
        forget_fairseq_configs()  # a machine-translation job imported fairseq: keep it out of the next job's config


def report_outcome(run_dir: Path, status: str, error: str | None) -> None:
    """In a sweep: leaves this job's outcome where the sweep's summary (``callbacks.OutputDirCheck``) reads it."""
    if (folder := os.environ.get(OUTCOMES_ENV)) and is_main():
        job = HydraConfig.get().job
        name = f"{job.get('num', 0):05d}-{os.getpid()}.json"
        atomic_write_text(Path(folder) / name, json.dumps({"run_dir": str(run_dir), "status": status, "error": error}))


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Returns the best valid primary metric, so that a Hydra sweeper can optimise it."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    status, error = "failed", None
    try:
        if multirun:  # a sweeper other than the basic one composes jobs as it goes: check each one here
            check_config(job_config(cfg))
        record = run(cfg, run_dir)
        status = record.status
    except Interrupted as e:
        status, error = "interrupted", str(e)
        print(f"{run_dir}: {e}", file=sys.stderr, flush=True)
        raise SystemExit(e.code) from None
    except Exception as e:
        error = str(e)
        where = f" (traceback in {e.record_path})" if isinstance(e, JobFailed) else ""
        print(f"Error: {run_dir}: {error}{where}", file=sys.stderr, flush=True)
        if not multirun:
            raise SystemExit(1) from None
        return None  # the sweep goes on
    finally:
        if multirun:
            report_outcome(run_dir, status, error)
    log.info("%s: %s, best valid %s, test %s", run_dir, record.status, record.best_valid, record.test)
    return record.best_valid.get(record.primary_metric)


if __name__ == "__main__":
    # Run the importable ``normexp.cli.train.main``, not this ``__main__`` copy: launchers that pickle the job (joblib,
    # submitit) then pickle a reference to it instead of this module's globals.
    from normexp.cli.train import main as importable_main

    importable_main()
