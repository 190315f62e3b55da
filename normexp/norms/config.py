"""`NormConfig` (the `norm` config group's schema) and `norm_factory`; no Hydra imports here."""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Callable, Optional

from torch import nn

from .dispatch import check_impl
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
    # Which implementation runs it: auto | fused_cpu | triton | torch (normexp/norms/dispatch.py). Not a
    # statistic: the numbers are the same, so it is not a norm option of `resolve`.
    impl: str = "auto"


_OPTION_FIELDS = tuple(f.name for f in fields(NormConfig) if f.name not in ("name", "impl"))


def norm_factory(cfg) -> NormFactory:
    """A picklable `factory(dim) -> nn.Module` for the variant in `cfg`.

    `cfg` is a NormConfig or anything with the same attributes (e.g. an OmegaConf node).  The name
    and every option are validated now; only width-dependent checks (dim >= 1, p * dim >= 1) wait
    for the call.
    """
    options = {f: getattr(cfg, f, None) for f in _OPTION_FIELDS}
    options = {f: v for f, v in options.items() if v is not None}
    resolve(cfg.name, **options)
    impl = getattr(cfg, "impl", None) or "auto"
    check_impl(impl)
    return functools.partial(build_norm, cfg.name, impl=impl, **options)
