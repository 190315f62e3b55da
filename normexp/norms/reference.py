"""The written formulas in plain torch ops: the always-available path and the tests' reference.

Autograd differentiates these directly, so their gradients are the formulas' gradients by
construction (detaching is `.detach()`, as in the papers' and lancopku's code).  Used on every
device and dtype the fused CPU kernel does not cover, and whenever that kernel cannot be built.
float16/bfloat16 inputs are computed in float32 and cast back, as torch's own norms do.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .spec import NormSpec


def _scale(v: Tensor, spec: NormSpec) -> Tensor:
    """1 / s with s = sqrt(v + eps) (inside) or sqrt(v) + eps (outside)."""
    if spec.eps_mode == "inside":
        return torch.rsqrt(v + spec.eps)
    return 1.0 / (v.sqrt() + spec.eps)


def normalize(x: Tensor, spec: NormSpec, weight: Optional[Tensor] = None,
              bias: Optional[Tensor] = None) -> Tensor:
    """Row-wise variant `spec` over the last dimension of `x` (any leading shape)."""
    low = x.dtype in (torch.float16, torch.bfloat16)
    xf = x.float() if low else x
    H = x.shape[-1]
    m = spec.stat_count(H)
    xs = xf[..., :m] if m < H else xf
    if spec.center:
        mean = xs.mean(-1, keepdim=True)
        # torch.var differentiates through its own mean; that path's gradient is zero
        # (sum(x - mean) = 0), so detaching the mean alone needs nothing here.
        var = xs.var(-1, correction=int(spec.unbiased), keepdim=True)
        if spec.detach_mean:
            mean = mean.detach()
    else:
        mean = None
        var = xs.square().sum(-1, keepdim=True) / spec.divisor(H)
    if spec.detach_var:
        var = var.detach()
    y = (xf - mean if mean is not None else xf) * _scale(var, spec)
    if spec.k is not None:
        out = spec.C * (1.0 - spec.k * y.detach()) * y
    else:
        out = y
        if weight is not None:
            out = out * (weight.float() if low else weight)
        if bias is not None:
            out = out + (bias.float() if low else bias)
    return out.to(x.dtype) if low else out
