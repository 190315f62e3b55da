"""Hydra callbacks: checks that must happen before Hydra creates the output folders."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


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


class OutputDirCheck(Callback):
    """Runs before Hydra makes the run (or sweep) folder. Hydra turns a callback's exceptions into warnings, so a
    refused folder ends the program here with the message (exit code 2), before anything is written."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "run")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config, "sweep")

    @staticmethod
    def _check(config: DictConfig, mode: str) -> None:
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().set_config(config)  # lets ${hydra:...} in the folder name resolve
        try:
            check_writable(config.hydra[mode].dir)
        except PermissionError as e:
            print(f"Error: {e}", file=sys.stderr)
            raise SystemExit(2) from e
