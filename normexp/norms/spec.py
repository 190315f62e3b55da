"""Variant names, their options, the two conventions, and validation.

`resolve(name, **options)` turns a variant name plus user options into a frozen `NormSpec` holding
every statistic choice explicitly; modules and kernels only ever read a `NormSpec`.  Everything
that does not depend on the width is checked here, so a bad option fails when the factory is made,
not when the model is built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

VARIANTS: tuple[str, ...] = (
    "none", "layernorm", "layernorm_simple", "detachnorm", "detach_mean", "detach_var",
    "adanorm", "rmsnorm", "prmsnorm", "batchnorm", "dyt", "scalenorm",
)
CONVENTIONS = ("paper", "official")
EPS_MODES = ("inside", "outside")

_LN = ("eps", "unbiased", "eps_mode", "convention")
_RMS = ("eps", "eps_mode", "bias", "convention")
# The options each variant accepts; anything else is a ValueError rather than silently ignored.
# `none` takes eps (and ignores it) so that one eps override can be swept across every variant.
OPTIONS: dict[str, tuple[str, ...]] = {
    "none": ("eps",),
    "layernorm": _LN + ("bias",),
    "layernorm_simple": _LN,
    "detachnorm": _LN,
    "detach_mean": _LN,
    "detach_var": _LN,
    "adanorm": _LN + ("C", "k"),
    "rmsnorm": _RMS,
    "prmsnorm": _RMS + ("p",),
    "batchnorm": ("eps", "unbiased"),
    "dyt": ("eps", "alpha0"),  # eps ignored, as for none
    "scalenorm": ("eps",),
}

# Statistic defaults per convention and family (docs/papers.md §1).  "paper": the written formulas,
# with eps = 1e-5 inside the sqrt on the biased variance (the papers' formulas have no eps; 1e-5 is
# the LayerNorm lineage's and torch's).  "official": lancopku/AdaNorm `LayerNormImpl` for the
# LayerNorm family (torch.std, i.e. unbiased, plus eps on the std) and bzhangGo/rmsnorm
# `rmsnorm_torch.py` for the RMS family (eps = 1e-8 on the RMS, int(p*H) elements, no bias).
# fairseq's baseline LayerNorm is torch's, so layernorm's "official" equals "paper".
_DEFAULTS = {
    ("paper", "ln"): dict(eps=1e-5, unbiased=False, eps_mode="inside"),
    ("official", "ln"): dict(eps=1e-5, unbiased=True, eps_mode="outside"),
    ("official", "layernorm"): dict(eps=1e-5, unbiased=False, eps_mode="inside"),
    # Eq. 4 of Zhang & Sennrich keeps the neuron bias b after normalization; their code drops it.
    ("paper", "rms"): dict(eps=1e-5, unbiased=False, eps_mode="inside", bias=True, p_round="ceil"),
    ("official", "rms"): dict(eps=1e-8, unbiased=False, eps_mode="outside", bias=False, p_round="floor"),
}
# (center, gain, bias, detach_mean, detach_var) per row-wise variant.
_SHAPE = {
    "layernorm": (True, True, True, False, False),
    "layernorm_simple": (True, False, False, False, False),
    "detachnorm": (True, False, False, True, True),
    "detach_mean": (True, False, False, True, False),
    "detach_var": (True, False, False, False, True),
    "adanorm": (True, False, False, False, False),
    "rmsnorm": (False, True, False, False, False),
    "prmsnorm": (False, True, False, False, False),
}


@dataclass(frozen=True)
class NormSpec:
    """Fully resolved variant: every choice that changes the numbers is an explicit field."""

    name: str
    eps: float = 1e-5
    center: bool = True           # subtract the mean (LayerNorm family) or not (RMS family)
    unbiased: bool = False        # variance divisor m - 1 instead of m
    eps_mode: str = "inside"      # sqrt(var + eps) or sqrt(var) + eps
    gain: bool = False
    bias: bool = False
    detach_mean: bool = False
    detach_var: bool = False
    C: Optional[float] = None     # AdaNorm: z = C * (1 - k * sg(y)) * y
    k: Optional[float] = None
    p: Optional[float] = None     # pRMSNorm: RMS over the first round(p * H) elements
    p_round: str = "ceil"
    convention: str = "paper"
    alpha0: Optional[float] = None  # DyT: the initial value of its scalar alpha

    @property
    def rowwise(self) -> bool:
        return self.name in _SHAPE

    def stat_count(self, dim: int) -> int:
        """How many leading elements of a row the statistic uses."""
        if self.p is None:
            return dim
        # round() first: 0.07 * 100 is 7.000000000000001 in floating point, whose ceil is 8.
        # The official floor is int(d * p) exactly as rmsnorm_torch.py computes it.
        return math.ceil(round(self.p * dim, 9)) if self.p_round == "ceil" else int(dim * self.p)

    def divisor(self, dim: int) -> int:
        return self.stat_count(dim) - int(self.unbiased)

    def check_dim(self, dim) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"norm '{self.name}': dim must be an integer >= 1, got {dim!r}")
        if self.p is not None and self.p * dim < 1:
            raise ValueError(f"norm '{self.name}': p * dim must be >= 1 (p={self.p}, dim={dim}); "
                             f"valid p for this width: [{1 / dim:.6g}, 1]")
        if self.rowwise and self.divisor(dim) < 1:
            raise ValueError(f"norm '{self.name}': the unbiased variance needs dim >= 2, got {dim}")


def _number(name: str, key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"norm '{name}': option {key} must be a finite number, got {value!r}")
    return float(value)


def _flag(name: str, key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"norm '{name}': option {key} must be true or false, got {value!r}")
    return value


def resolve(name: str, **options) -> NormSpec:
    """Validate a variant name and its options; return the resolved `NormSpec`."""
    if name not in VARIANTS:
        raise ValueError(f"unknown norm {name!r}; valid names: {', '.join(VARIANTS)}")
    unknown = sorted(set(options) - set(OPTIONS[name]))
    if unknown:
        raise ValueError(f"norm '{name}' does not take option(s) {', '.join(unknown)}; "
                         f"valid options: {', '.join(OPTIONS[name]) or '(none)'}")
    opts = dict(options)
    convention = opts.pop("convention", "paper")
    if convention not in CONVENTIONS:
        raise ValueError(f"norm '{name}': convention must be one of {CONVENTIONS}, got {convention!r}")
    eps = _number(name, "eps", opts.pop("eps")) if "eps" in opts else None
    if eps is not None and eps < 0:
        raise ValueError(f"norm '{name}': eps must be >= 0, got {eps}")
    if name in ("none", "batchnorm"):
        unbiased = _flag(name, "unbiased", opts["unbiased"]) if "unbiased" in opts else False
        return NormSpec(name=name, eps=1e-5 if eps is None else eps, unbiased=unbiased)
    if name == "scalenorm":
        return NormSpec(name=name, eps=1e-5 if eps is None else eps)
    if name == "dyt":
        alpha0 = _number(name, "alpha0", opts.get("alpha0", 0.5))  # the DyT paper's default alpha_0
        return NormSpec(name=name, eps=0.0 if eps is None else eps, alpha0=alpha0)

    family = "rms" if name in ("rmsnorm", "prmsnorm") else "ln"
    d = dict(_DEFAULTS.get((convention, name)) or _DEFAULTS[(convention, family)])
    center, gain, bias, detach_mean, detach_var = _SHAPE[name]
    spec = NormSpec(name=name, center=center, gain=gain, bias=d.get("bias", bias),
                    detach_mean=detach_mean, detach_var=detach_var, eps=d["eps"],
                    unbiased=d["unbiased"], eps_mode=d["eps_mode"],
                    p_round=d.get("p_round", "ceil"), convention=convention)
    if eps is not None:
        spec = replace(spec, eps=eps)
    if "unbiased" in opts:
        spec = replace(spec, unbiased=_flag(name, "unbiased", opts["unbiased"]))
    if "bias" in opts:
        spec = replace(spec, bias=_flag(name, "bias", opts["bias"]))
    if "eps_mode" in opts:
        if opts["eps_mode"] not in EPS_MODES:
            raise ValueError(f"norm '{name}': eps_mode must be one of {EPS_MODES}, got {opts['eps_mode']!r}")
        spec = replace(spec, eps_mode=opts["eps_mode"])
    if name == "adanorm":
        C = _number(name, "C", opts.get("C", 1.0))
        k = _number(name, "k", opts.get("k", 0.1))
        if C <= 0 or k <= 0:
            raise ValueError(f"norm 'adanorm': C and k must be > 0, got C={C}, k={k}")
        spec = replace(spec, C=C, k=k)
    if name == "prmsnorm":
        p = _number(name, "p", opts.get("p", 0.0625))
        if not 0 < p <= 1:
            raise ValueError(f"norm 'prmsnorm': p must be in (0, 1], got {p}")
        spec = replace(spec, p=p)
    return spec
