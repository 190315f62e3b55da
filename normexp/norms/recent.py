"""DyT and ScaleNorm: two recent replacements for LayerNorm that take no mean or variance over the row.

Neither centres the row or divides by its standard deviation, so neither is a `RowNorm` and neither goes through the
fused kernel: a few plain torch ops each, which autograd, `torch.compile` and any device handle as they are.

- DyT, Dynamic Tanh (Zhu, Chen, He, LeCun & Liu 2025, "Transformers without Normalization", arXiv 2503.10622):
  z = gamma * tanh(alpha * x) + beta, one learnable scalar alpha initialised to alpha0 (the paper's default 0.5),
  per-channel gamma = 1 and beta = 0 at init, as in the authors' `DynamicTanh`.
- ScaleNorm (Nguyen & Salazar 2019, "Transformers without Tears", arXiv 1910.05895, Eq. 7):
  z = g * x / max(||x||_2, eps), one learnable scalar g initialised to sqrt(dim), eps = 1e-5 as in the authors' code.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .spec import NormSpec


def _check_width(name: str, dim: int, x: Tensor) -> None:
    if x.shape[-1] != dim:
        raise ValueError(f"{name} expects a last dimension of {dim}, got shape {tuple(x.shape)}")


class DyT(nn.Module):
    """`dyt`: gamma * tanh(alpha * x) + beta over the last dimension (element-wise; no row statistic)."""

    eps = None  # torch's TransformerEncoderLayer compares norm1.eps with norm2.eps

    def __init__(self, dim: int, spec: NormSpec):
        super().__init__()
        spec.check_dim(dim)
        self.spec, self.dim = spec, dim
        self.alpha = nn.Parameter(torch.empty(1))
        self.weight = nn.Parameter(torch.empty(dim))
        self.bias = nn.Parameter(torch.empty(dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.alpha, self.spec.alpha0)
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        _check_width("dyt", self.dim, x)
        return torch.tanh(self.alpha * x) * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"dyt, {self.dim}, alpha0={self.spec.alpha0:g}"


class ScaleNorm(nn.Module):
    """`scalenorm`: g * x / max(||x||_2, eps) over the last dimension, one scalar gain g."""

    def __init__(self, dim: int, spec: NormSpec):
        super().__init__()
        spec.check_dim(dim)
        self.spec, self.dim, self.eps = spec, dim, spec.eps
        self.scale = nn.Parameter(torch.empty(()))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.constant_(self.scale, math.sqrt(self.dim))

    def forward(self, x: Tensor) -> Tensor:
        _check_width("scalenorm", self.dim, x)
        return x * (self.scale / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp(min=self.eps))

    def extra_repr(self) -> str:
        return f"scalenorm, {self.dim}, eps={self.eps:g}, g0=sqrt({self.dim})"
