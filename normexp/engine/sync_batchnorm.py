"""The ``batchnorm`` variant under DDP: statistics over the global batch, so 2 ranks × batch B equal 1 rank × 2B.

torch's ``nn.SyncBatchNorm`` takes (N, C, ...) inputs on GPUs only; our batchnorm normalizes the last dimension of any
input, on every device. So its training-mode forward is re-done here with a differentiable all-reduce
(``torch.distributed.nn``): the global mean, then the global biased variance (two passes, as one process computes
it), normalized with them; the running statistics take the global unbiased variance, as nn.BatchNorm does. Works on
gloo (CPU) and NCCL. Eval mode uses the running statistics: nothing to synchronise.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce

from normexp.norms.variants import BatchNorm


def global_batch_norm(bn: nn.BatchNorm1d, x: Tensor) -> Tensor:
    """``bn`` in training mode on rows ``x`` (N, C) whose batch is split across the ranks."""
    count = all_reduce(x.new_full((1,), float(x.shape[0]))).detach()
    mean = all_reduce(x.sum(0)) / count
    var = all_reduce((x - mean).square().sum(0)) / count
    if bn.track_running_stats:
        with torch.no_grad():
            bn.num_batches_tracked.add_(1)
            m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
            bn.running_mean.lerp_(mean.detach().to(bn.running_mean.dtype), m)
            unbiased = var.detach() * count / (count - 1).clamp(min=1)
            bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), m)
    y = (x - mean) * torch.rsqrt(var + bn.eps)
    return y * bn.weight + bn.bias if bn.affine else y


class SyncBatchNorm(BatchNorm):
    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        if x.shape[-1] != self.dim:
            raise ValueError(f"batchnorm expects a last dimension of {self.dim}, got shape {tuple(x.shape)}")
        rows = x.reshape(-1, self.dim)
        return global_batch_norm(self, rows.float() if rows.dtype in (torch.float16, torch.bfloat16) else rows) \
            .to(x.dtype).view(x.shape)


def sync_batchnorms(model: nn.Module) -> int:
    """Makes every batchnorm site of ``model`` synchronised, in place (same parameters, buffers and hooks: only the
    class changes); returns how many."""
    sites = [m for m in model.modules() if type(m) is BatchNorm]
    for module in sites:
        module.__class__ = SyncBatchNorm
    return len(sites)
