"""`NormConfig` (the `norm` config group's schema) and `norm_factory`; no Hydra imports here."""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Optional

from torch import nn

from .dispatch import check_impl
from .plugin import PluginError, plugin_factory
from .spec import resolve
from .variants import build_norm

# A norm factory builds one normalization module for a feature size: ``norm(dim) -> nn.Module``. Models take one
# and call it at every norm site; they never know which variant it builds.
NormFactory = Callable[[int], nn.Module]


@dataclass
class NormConfig:
    """One variant and its options.  None means "the variant's default" (see `normexp.norms`)."""

    name: str = "layernorm"
    eps: Optional[float] = None
    unbiased: Optional[bool] = None
    eps_mode: Optional[str] = None
    C: Optional[float] = None
    k: Optional[float] = None
    p: Optional[float] = None
    bias: Optional[bool] = None
    # "paper" (default) or "official": which codebase's statistics the defaults follow.
    convention: Optional[str] = None
    alpha0: Optional[float] = None  # dyt: the initial alpha
    # A norm of the user's own (norms/plugin.py): an importable class or factory target(dim, **options). `name` is
    # then the run's own label for it (folder, record, table row), and the built-in options above stay unset.
    target: Optional[str] = None
    # Any, not dict: a typed dict would refuse `norm.options={alpha: 0.5}` on the command line (keys not in struct).
    options: Any = None
    # Which implementation runs it: auto | fused_cpu | triton | torch (normexp/norms/dispatch.py). Not a
    # statistic: the numbers are the same, so it is not a norm option of `resolve`.
    impl: str = "auto"


_OPTION_FIELDS = tuple(f.name for f in fields(NormConfig) if f.name not in ("name", "target", "options", "impl"))
_DEFAULTS = {f.name: f.default for f in fields(NormConfig)}


def norm_factory(cfg) -> NormFactory:
    """A picklable `factory(dim) -> nn.Module` for the variant in `cfg`.

    `cfg` is a NormConfig or anything with the same attributes (e.g. an OmegaConf node).  The name
    and every option are validated now; only width-dependent checks (dim >= 1, p * dim >= 1) wait
    for the call.
    """
    options = {f: getattr(cfg, f, None) for f in _OPTION_FIELDS}
    options = {f: v for f, v in options.items() if v is not None}
    target = getattr(cfg, "target", None)
    if target:
        # Options set away from their defaults (a field with a non-None default, e.g. impl, is checked below).
        builtin = [f for f, v in options.items() if v != _DEFAULTS[f]]
        if builtin:
            raise PluginError(f"norm.target={target}: norm.{', norm.'.join(builtin)} belong to the built-in variants; "
                              "give a custom norm's options as norm.options={...}")
        if (getattr(cfg, "impl", None) or "auto") != "auto":  # the custom code is what runs: a choice would be ignored
            raise PluginError(f"norm.target={target}: norm.impl={cfg.impl} chooses between the built-in variants' "
                              "kernels; a custom norm runs its own code: leave norm.impl=auto")
        return plugin_factory(target, cfg.name, getattr(cfg, "options", None))
    if getattr(cfg, "options", None):
        raise ValueError(f"norm.options is for a custom norm (norm=custom norm.target=...); "
                         f"norm '{cfg.name}' takes its options as norm.<option>=...")
    resolve(cfg.name, **options)
    impl = getattr(cfg, "impl", None) or "auto"
    check_impl(impl)
    return functools.partial(build_norm, cfg.name, impl=impl, **options)


def resolved_options(cfg) -> dict:
    """What ``cfg`` (a NormConfig or alike) runs, every statistic choice explicit: the resolved `NormSpec` as a plain
    dict (name, C, k, convention, eps and eps_mode, unbiased, p, gain, bias, ...), for a run record. Two runs that
    differ in any of these computed different norms, whatever their presets were called. A custom norm is its
    target and its options."""
    if getattr(cfg, "target", None):
        return {"name": cfg.name, "target": cfg.target, "options": dict(getattr(cfg, "options", None) or {})}
    options = {f: getattr(cfg, f, None) for f in _OPTION_FIELDS}
    return asdict(resolve(cfg.name, **{f: v for f, v in options.items() if v is not None}))
