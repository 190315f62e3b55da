"""Structured-config schemas, registered in Hydra's ConfigStore.

The YAML under ``conf/`` extends these schemas, so a misspelled key, a wrong type or an unknown group choice fails at
composition, before any training, with Hydra's message naming what is valid. The schemas themselves are plain
dataclasses that live beside the code they configure (tasks, models, norms, engine); only ``normexp.cli`` knows Hydra.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from normexp.engine.job import RESULT_NEUTRAL_KEYS
from normexp.engine.config import LoggerConfig, OptimConfig, TrainerConfig
from normexp.norms.config import NormConfig
from normexp.norms.plugin import default_name
from normexp.tasks.registry import model_configs, task_configs


@dataclass
class Config:
    task: Any = MISSING
    model: Any = MISSING
    norm: NormConfig = field(default_factory=NormConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 1
    name: str = "default"  # experiment name: the output folder and the W&B group
    profile: str = "full"  # full | tiny (a smoke-sized setting; recorded and shown in tables)
    out_root: str = "outputs"


# Overrides kept out of a run folder's name: those that already name it, those that only pick where or how a job runs,
# and (from the engine, the one list of them) the settings that do not change a result.
FOLDER_NAMING_KEYS = ("task", "norm", "seed", "name", "experiment", "profile", "out_root", "logger.mode",
                      "logger.project", "logger.entity", "logger.group", "hydra/launcher", "hydra.launcher.n_jobs")


def dirname_excluded_keys() -> list[str]:
    return [*FOLDER_NAMING_KEYS, *RESULT_NEUTRAL_KEYS]


def register_configs() -> None:
    if not OmegaConf.has_resolver("normexp_dirname_excluded_keys"):  # conf/config.yaml's exclude_keys
        OmegaConf.register_new_resolver("normexp_dirname_excluded_keys", dirname_excluded_keys)
    if not OmegaConf.has_resolver("normexp_norm_name"):  # conf/norm/custom.yaml: a custom norm's name from its target
        OmegaConf.register_new_resolver("normexp_norm_name", default_name)
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="norm", name="norm_schema", node=NormConfig)
    cs.store(group="optim", name="optim_schema", node=OptimConfig)
    cs.store(group="trainer", name="trainer_schema", node=TrainerConfig)
    cs.store(group="logger", name="logger_schema", node=LoggerConfig)
    for name, schema in task_configs().items():
        cs.store(group="task", name=f"{name}_schema", node=schema())
    for name, schema in model_configs().items():
        cs.store(group="model", name=f"{name}_schema", node=schema())
