"""The modules behind every variant name, and `build_norm`."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from . import dispatch, fast, reference
from .builtin import torch_kernel
from .recent import DyT, ScaleNorm
from .spec import NormSpec, resolve


class NoNorm(nn.Module):
    """`none`: the identity, the papers' "w/o Norm".  No parameters."""

    eps = None  # torch's TransformerEncoderLayer compares norm1.eps with norm2.eps
    impl_ran = "torch"

    def __init__(self, dim: int, spec: Optional[NormSpec] = None):
        super().__init__()
        self.spec = spec or NormSpec(name="none")
        self.spec.check_dim(dim)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return f"none, {self.dim}"


class RowNorm(nn.Module):
    """Every row-wise variant: normalizes the last dimension of any (..., dim) input.

    The statistics and the gradient paths come from `spec` (see `spec.NormSpec`).  Gain is
    initialised to ones and bias to zeros, as in all three papers.  `impl` chooses the implementation
    (dispatch.py): by default CPU float32/float64 inputs use the fused kernel (`fast`), CUDA inputs
    torch's kernel where the formula is torch's (`builtin`) else the Triton kernels, and the rest the
    torch-ops formula (`reference`).  All compute the same function and the same gradient.
    `impl_ran` names the implementation of the latest call (None before the first).
    """

    def __init__(self, dim: int, spec: NormSpec, impl: str = "auto"):
        super().__init__()
        spec.check_dim(dim)
        dispatch.check_impl(impl)
        self.spec, self.dim, self.eps, self.impl, self.impl_ran = spec, dim, spec.eps, impl, None
        self.weight = nn.Parameter(torch.empty(dim)) if spec.gain else None
        self.bias = nn.Parameter(torch.empty(dim)) if spec.bias else None
        self._fused_args = fast.op_args(spec, dim)
        self._torch_kernels = {d: torch_kernel(spec, dim, d) for d in ("cpu", "cuda")}
        self._auto_triton = dispatch.cuda_auto_takes_triton(spec)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"{self.spec.name} expects a last dimension of {self.dim}, got shape {tuple(x.shape)}")
        w, b = self.weight, self.bias  # read once: each parameter lookup costs about 1 us
        impl = self.impl
        if impl in ("auto", "fused_cpu") and fast.supports(x, w, b):
            self._ran("fused_cpu")
            return fast.rownorm(x, w, b, self._fused_args)
        kernel = self._torch_kernels.get(x.device.type)
        if impl == "triton" or (impl == "auto" and x.is_cuda and kernel is None and self._auto_triton
                                and dispatch.triton_runs(x)):
            if not dispatch.triton_runs(x):
                raise RuntimeError(dispatch.why_not(impl, self.spec.name, x))
            self._ran("triton")
            return dispatch.triton_rownorm(x, w, b, self._fused_args)
        if impl == "fused_cpu":
            raise RuntimeError(dispatch.why_not(impl, self.spec.name, x))
        self._ran("torch")
        if kernel is not None:
            return kernel(x, w, b)
        return reference.normalize(x, self.spec, w, b)

    def _ran(self, impl: str) -> None:
        if self.impl_ran != impl:  # a plain attribute: no nn.Module.__setattr__ on every call
            self.impl_ran = impl

    def extra_repr(self) -> str:
        s = self.spec
        parts = [s.name, str(self.dim), f"eps={s.eps:g}", f"eps_mode={s.eps_mode}"]
        if s.center:
            parts.append(f"unbiased={s.unbiased}")
        if s.k is not None:
            parts += [f"C={s.C:g}", f"k={s.k:g}"]
        if s.p is not None:
            parts += [f"p={s.p:g}", f"m={s.stat_count(self.dim)}"]
        parts.append(f"affine=({'gain' if s.gain else ''}{'+bias' if s.bias else ''})" if s.gain or s.bias else "affine=none")
        parts.append(f"impl={self.impl}")
        return ", ".join(parts)


class BatchNorm(nn.BatchNorm1d):
    """`batchnorm` (the baseline of Ba et al.): each last-dim feature is normalized over all
    leading dims; batch statistics (and running-average updates) in training, the running
    statistics in eval.  Gain and bias, eps inside, torch's momentum 0.1.  In a sequence model the
    leading dims include padding positions, which then enter the batch statistics.

    Training normalizes with the biased batch variance (divisor B) by default, as torch and Ioffe & Szegedy's
    Algorithm 1 do; ``unbiased=True`` normalizes with the B - 1 divisor instead.  Either way the running variance
    is updated with the unbiased one, as torch does, so evaluation is the same function of the running statistics."""

    impl_ran = "torch"

    def __init__(self, dim: int, spec: Optional[NormSpec] = None):
        spec = spec or NormSpec(name="batchnorm")
        spec.check_dim(dim)
        super().__init__(dim, eps=spec.eps)
        self.spec, self.dim = spec, dim

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"batchnorm expects a last dimension of {self.dim}, got shape {tuple(x.shape)}")
        rows = x.reshape(-1, self.dim)
        if self.training and self.spec.unbiased:
            return self._unbiased_batch_statistics(rows).view(x.shape)
        return super().forward(rows).view(x.shape)

    def _unbiased_batch_statistics(self, rows: Tensor) -> Tensor:
        if rows.shape[0] < 2:  # torch's own refusal, for the same reason
            raise ValueError(f"batchnorm expects more than 1 value per channel when training, got {rows.shape[0]}")
        mean, var = rows.mean(0), rows.var(0, unbiased=True)
        with torch.no_grad():  # torch's update: running = (1 - momentum) * running + momentum * batch (unbiased var)
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var, self.momentum)
            self.num_batches_tracked += 1
        return (rows - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


NORM_TYPES = (NoNorm, RowNorm, BatchNorm, DyT, ScaleNorm)


def build_norm(name: str, dim: int, impl: str = "auto", **options) -> nn.Module:
    """The variant `name` for width `dim`, run by `impl` ("auto", "fused_cpu", "triton" or "torch";
    dispatch.py).  Unknown names, invalid options or an impl that cannot exist here raise ValueError.
    `none`, `batchnorm`, `dyt` and `scalenorm` are torch modules whatever `impl` says (impl_ran "torch")."""
    spec = resolve(name, **options)
    if name in ("none", "batchnorm", "dyt", "scalenorm"):  # torch modules whatever impl says
        dispatch.check_impl(impl)
        return {"none": NoNorm, "batchnorm": BatchNorm, "dyt": DyT, "scalenorm": ScaleNorm}[name](dim, spec)
    return RowNorm(dim, spec, impl)
