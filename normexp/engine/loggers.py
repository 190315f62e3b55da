"""Metric loggers behind one small interface: ``log(metrics, step)``, ``summary(record)``, ``finish(status)``.

The run record is the truth; loggers are views of it. W&B runs offline by default (``WANDB_MODE=offline``), its files
land in the run dir, and its run id is kept in checkpoints so a resumed run continues the same W&B run.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("normexp")


class ConsoleLogger:
    def log(self, metrics: dict[str, float], step: int) -> None:
        if any(k.startswith(("valid/", "test/", "train/epoch_loss")) for k in metrics):
            log.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def summary(self, record: Any) -> None:
        log.info("status=%s best_valid=%s test=%s", record.status, record.best_valid, record.test)

    def resume_state(self) -> dict[str, Any]:
        return {}

    def finish(self, status: str) -> None:
        pass


class WandbLogger(ConsoleLogger):
    """Console output plus a W&B run named ``<task>-<norm>-s<seed>``, grouped by experiment name."""

    def __init__(self, cfg, run_dir: Path, run_name: str, group: str, config: dict, job_type: str,
                 run_id: str | None = None):
        import wandb
        import wandb.sdk.lib.runid

        os.environ.setdefault("WANDB_MODE", cfg.mode)
        os.environ.setdefault("WANDB_SILENT", "true")
        self.wandb = wandb
        self.run = wandb.init(project=cfg.project, entity=cfg.entity, name=run_name, group=group, job_type=job_type,
                              config=config, dir=str(run_dir), id=run_id or wandb.sdk.lib.runid.generate_id(),
                              resume="allow", mode=os.environ["WANDB_MODE"], reinit="finish_previous")

    def log(self, metrics: dict[str, float], step: int) -> None:
        super().log(metrics, step)
        self.run.log(metrics, step=step)

    def summary(self, record: Any) -> None:
        super().summary(record)
        self.run.summary.update({"status": record.status, "steps_per_s": record.steps_per_s,
                                 **{f"best_valid/{k}": v for k, v in record.best_valid.items()},
                                 **{f"test/{k}": v for k, v in record.test.items()}})

    def resume_state(self) -> dict[str, Any]:
        return {"wandb_id": self.run.id}

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)
