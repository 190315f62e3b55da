"""`NormConfig` (the `norm` config group's schema) and `norm_factory`; no Hydra imports here."""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from typing import Callable, Optional

from torch import nn

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


_OPTION_FIELDS = tuple(f.name for f in fields(NormConfig) if f.name != "name")


def norm_factory(cfg) -> NormFactory:
    """A picklable `factory(dim) -> nn.Module` for the variant in `cfg`.

    `cfg` is a NormConfig or anything with the same attributes (e.g. an OmegaConf node).  The name
    and every option are validated now; only width-dependent checks (dim >= 1, p * dim >= 1) wait
    for the call.
    """
    options = {f: getattr(cfg, f, None) for f in _OPTION_FIELDS}
    options = {f: v for f, v in options.items() if v is not None}
    resolve(cfg.name, **options)
    return functools.partial(build_norm, cfg.name, **options)


def resolved_options(cfg) -> dict:
    """What ``cfg`` (a NormConfig or alike) runs, every statistic choice explicit: the resolved `NormSpec` as a plain
    dict (name, C, k, convention, eps and eps_mode, unbiased, p, gain, bias, ...), for a run record. Two runs that
    differ in any of these computed different norms, whatever their presets were called."""
    options = {f: getattr(cfg, f, None) for f in _OPTION_FIELDS}
    return asdict(resolve(cfg.name, **{f: v for f, v in options.items() if v is not None}))
