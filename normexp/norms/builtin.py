"""torch's own kernels for the variants whose formula is exactly torch's.

Where the fused CPU kernel does not apply (CUDA, float16/bfloat16, no compiler), `layernorm` and
`layernorm_simple` with eps inside the sqrt of the biased variance are `F.layer_norm`, one fused
kernel on every device, instead of the reference path's chain of torch ops: in bfloat16 on CPU at
8192x512, forward+backward of layernorm took 5-14 ms against 63-106 ms before.  On CUDA, `rmsnorm`
with eps inside is `F.rms_norm` (plus the bias, when it has one), fused there since torch 2.8; on
CPU torch composes it of torch ops, and in half precision at 8192x512 it took 1.05-1.6x the
reference formula's time (forward+backward, two runs), so CPU keeps the reference.  Every other variant or option (detached statistics,
AdaNorm, eps outside, unbiased variance, pRMSNorm's partial statistic) has no torch kernel.
"""
from __future__ import annotations

import functools
from typing import Callable, Optional

import torch.nn.functional as F
from torch import Tensor

from .spec import NormSpec

Kernel = Callable[[Tensor, Optional[Tensor], Optional[Tensor]], Tensor]


def _like(p: Optional[Tensor], x: Tensor) -> Optional[Tensor]:
    # float32 gain/bias on a bfloat16/float16 input (a model outside autocast): torch's CUDA kernels refuse mixed
    # dtypes ("expected scalar type BFloat16 but found Float", seen on an H200); the output keeps x's dtype, as the
    # Triton and C++ kernels' does. Statistics stay in float32 inside the kernel either way.
    return p if p is None or p.dtype == x.dtype else p.to(x.dtype)


def _layer_norm(x: Tensor, w: Optional[Tensor], b: Optional[Tensor], *, dim: int, eps: float) -> Tensor:
    return F.layer_norm(x, (dim,), _like(w, x), _like(b, x), eps)


def _rms_norm(x: Tensor, w: Optional[Tensor], b: Optional[Tensor], *, dim: int, eps: float) -> Tensor:
    b = _like(b, x)
    y = F.rms_norm(x, (dim,), _like(w, x), eps)
    return y if b is None else y + b


def torch_kernel(spec: NormSpec, dim: int, device_type: str) -> Optional[Kernel]:
    """`f(x, weight, bias)` computing `spec` at width `dim` with torch's fused kernel on `device_type`
    ("cpu", "cuda", ...), or None where torch has none.  A partial of a module-level function, so
    that a module holding it can still be pickled."""
    same_statistic = (spec.eps_mode == "inside" and not spec.unbiased and spec.stat_count(dim) == dim
                      and not spec.detach_mean and not spec.detach_var and spec.k is None)
    if not (spec.rowwise and same_statistic):
        return None
    if spec.center:
        return functools.partial(_layer_norm, dim=dim, eps=spec.eps)
    return functools.partial(_rms_norm, dim=dim, eps=spec.eps) if device_type == "cuda" else None
