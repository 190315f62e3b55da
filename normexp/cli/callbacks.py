"""Hydra callbacks: checks that must happen before Hydra creates the output folders, and the sweep's summary."""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from normexp.cli.checks import ConfigError, check_config
from normexp.engine.distributed import is_main

# Where each job of a sweep leaves its outcome (one small JSON file per job) for the sweep's summary. Set by
# ``on_multirun_start`` in the environment, so that jobs in other processes (joblib, submitit, SLURM) find it too.
OUTCOMES_ENV = "NORMEXP_SWEEP_OUTCOMES"


def check_writable(folder: str) -> None:
    """Refuses an output folder that cannot be created or written, naming it and the way out."""
    path = Path(folder).resolve()
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(
            f"cannot write the output folder {path}: {ancestor} is not a writable folder. "
            "Choose another place with out_root=<writable folder> (or hydra.run.dir=... / hydra.sweep.dir=...)."
        )


def job_config(config: DictConfig) -> dict:
    """The resolved job settings (everything but ``hydra``) as a plain dict."""
    return {key: OmegaConf.to_container(config[key], resolve=True) if OmegaConf.is_config(config[key])
            else config[key] for key in config if key != "hydra"}


def refuse(message: str) -> None:
    """Hydra turns a callback's exceptions into warnings: a refusal ends the program here, exit code 2."""
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(2)


def sweep_job_configs(config: DictConfig) -> list[dict] | None:
    """Every job config of a sweep run by Hydra's basic sweeper (the one that expands ``a=1,2``), composed as the
    launcher will compose it; None for another sweeper (its jobs are checked one by one as they start)."""
    if not str(config.hydra.sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = GlobalHydra.instance().config_loader()
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(
        params + list(config.hydra.overrides.task))
    jobs = BasicSweeper.split_arguments(overrides, None)
    return [job_config(loader.load_sweep_config(master_config=config, sweep_overrides=list(job)))
            for job in (jobs[0] if jobs else [[]])]


class OutputDirCheck(Callback):
    """Runs before Hydra makes the run (or sweep) folder: the folder must be writable and every job's config valid.
    After a sweep it prints the summary of its jobs and exits nonzero when any failed."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check_folder(config, "run")
        try:
            check_config(job_config(config))
        except ConfigError as e:
            refuse(str(e))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check_folder(config, "sweep")
        try:
            jobs = sweep_job_configs(config)
            for job in jobs or []:
                check_config(job)
        except ConfigError as e:
            refuse(f"{e} (no job of the sweep was started)")
        outcomes = Path(config.hydra.sweep.dir).resolve() / ".sweeps" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.environ[OUTCOMES_ENV] = str(outcomes)
        self._jobs = len(jobs) if jobs is not None else None

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        folder = Path(os.environ.pop(OUTCOMES_ENV, ""))
        outcomes = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
        shutil.rmtree(folder, ignore_errors=True)  # read once; the records stay the truth
        if not is_main():  # under torchrun every rank runs the sweep; rank 0 alone writes records and judges them
            return
        failed = [o for o in outcomes if o["status"] not in ("completed", "diverged")]
        missing = (self._jobs or 0) - len(outcomes)
        lines = [f"sweep: {len(outcomes) - len(failed)} jobs completed or diverged, {len(failed)} failed"
                 + (f", {missing} gave no outcome (killed?)" if missing > 0 else "")]
        lines += [f"  {o['status']}: {o['run_dir']}: {o['error']}" for o in failed]
        print("\n".join(lines), file=sys.stderr if failed or missing > 0 else sys.stdout, flush=True)
        if failed or missing > 0:
            raise SystemExit(1)

    @staticmethod
    def _check_folder(config: DictConfig, mode: str) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)  # lets ${hydra:...} in the folder name resolve
        try:
            check_writable(config.hydra[mode].dir)
        except PermissionError as e:
            refuse(str(e))
