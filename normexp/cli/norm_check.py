"""Hydra callback: a custom norm (``norm.target``) is imported and probed before Hydra creates any run folder.

Built-in variants are validated by the job (and a bad option recorded as a failed run); a custom target is the user's
code, so a missing module, something not callable, a wrong return type or a wrong width ends the program here, in
one line naming the target, with exit code 2. In a multirun every distinct norm of the sweep is checked first.
"""
from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from normexp.norms import norm_factory
from normexp.norms.plugin import PluginError

# Overrides that can change the composed norm: the group, its keys, and the presets that may set it.
_NORM_KEYS = ("norm", "experiment")


def check_norm(norm) -> None:
    """Builds the factory of a custom norm (which imports and probes it); exits 2 with one line if that fails."""
    if not OmegaConf.select(norm, "target"):
        return
    try:
        norm_factory(OmegaConf.to_object(norm))
    except PluginError as e:
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def _touches_norm(override) -> bool:
    key = override.key_or_group.lstrip("+~")
    return key.split(".")[0].split("/")[0] in _NORM_KEYS


def sweep_norms(config: DictConfig) -> list:
    """The norm config of every distinct job of a multirun, as far as the norm can differ between them: the sweeps of
    norm keys and experiment presets are expanded, other sweeps (seeds, tasks, ...) are left at their base value."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(overrides)
    kept = [text for text, o in zip(overrides, parsed) if not o.is_sweep_override() or _touches_norm(o)]
    if not any(o.is_sweep_override() and _touches_norm(o) for o in parsed):
        return [config.norm]
    loader = GlobalHydra.instance().config_loader()
    try:
        batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(kept), None)
    except Exception:  # noqa: BLE001 - a sweep only another sweeper expands (e.g. interval()): its jobs fail at build, recorded
        return [config.norm]
    return [loader.load_sweep_config(config, list(job)).norm for batch in batches for job in batch]


class NormCheck(Callback):
    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        check_norm(config.norm)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        for norm in sweep_norms(config):
            check_norm(norm)
