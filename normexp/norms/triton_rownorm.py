"""The Triton path of every row-wise variant as a torch op: `torch.ops.normexp.triton_rownorm`.

Why: on CUDA only layernorm, layernorm_simple (paper statistic) and paper rmsnorm reach a fused torch
kernel (builtin.py); written in torch ops, AdaNorm's forward+backward is ~30 passes over memory and
the other variants 15-25 (issue 23), so the variant would change the cost of a GPU experiment.  The
kernels (triton_kernels.py) take the fused CPU op's arguments (`fast.op_args`): one pair for all.

Eagerly the kernels run through an autograd.Function (less per-call overhead); under torch.compile
through `torch.library.custom_op`s with fake implementations and a registered autograd formula, so
that the graph holds them as ops (no graph break).  Autocast passes them whatever dtype reaches them.
Outputs are in the input's dtype (float32, bfloat16, float16), every statistic and sum in float32;
gain/bias gradients come back in their own dtype.  Importing this module imports triton: do it only
when the triton implementation is chosen (dispatch.py).  On CPU tensors the kernels run only under Triton's
interpreter (TRITON_INTERPRET=1 set before triton is imported), which is what the tests do; it is slow (about
1 s per call at 256x512).
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
import triton
from torch import Tensor

from .triton_kernels import rownorm_backward, rownorm_forward

MAX_BLOCK = 8192  # widest row held in registers; wider rows loop over blocks of this many columns


def _launch_settings(H: int, max_block: int) -> tuple[int, int, bool]:
    """(BLOCK, num_warps, ONE_BLOCK): Liger-Kernel's warps for the block width."""
    block = min(triton.next_power_of_2(H), max_block)
    warps = 32 if block >= 32768 else 16 if block >= 8192 else 8 if block >= 2048 else 4
    return block, warps, H <= block


# Backward programs per SM.  At 1 (until 2026-12-04) the H200 run showed every variant's Triton fwd+bwd at 0.37-0.94 ms
# whatever the shape, bfloat16 no faster than float32: not bandwidth-bound, and one 4-warp program per SM walking ~124
# rows in turn leaves the memory latency unhidden.  8 is flash-attention's choice for the same kernel structure
# (flash_attn/ops/triton/layer_norm.py, `_layer_norm_bwd`: "multi_processor_count * 8", more programs hide the
# latency, their partial gain/bias rows cost a longer final sum).  Not yet measured on a GPU:
# scripts/bench_triton_breakdown.py times 1-16 (docs/gpu.md).
BWD_PROGRAMS_PER_SM = 8


@functools.cache
def _sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of a GPU; 1 stands in for them in the interpreter, so that the tests' few rows still
    share BWD_PROGRAMS_PER_SM programs (several rows per program, and programs left without rows)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def _forward(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], m: int, center: bool, divisor: float,
             eps: float, inside: bool, C: float, k: float, max_block: int) -> tuple[Tensor, Tensor]:
    """Launches the forward kernel: (output, float32 (rows, 3) statistics)."""
    H = x.shape[-1]
    x2 = x.reshape(-1, H).contiguous()
    y = torch.empty_like(x2)
    stats = torch.empty(x2.shape[0], 3, device=x.device, dtype=torch.float32)
    if x2.shape[0] == 0:
        return y.view(x.shape), stats
    block, warps, one = _launch_settings(H, max_block)
    ada = k != 0.0
    w = weight.contiguous() if weight is not None and not ada else None
    b = bias.contiguous() if bias is not None and not ada else None
    rownorm_forward[(x2.shape[0],)](
        x2, y, x2 if w is None else w, x2 if b is None else b, stats, H, m, divisor, eps, C, k,
        CENTER=center, INSIDE=inside, HAS_W=w is not None, HAS_B=b is not None, ADA=ada, BLOCK=block,
        ONE_BLOCK=one, num_warps=warps)
    return y.view(x.shape), stats


def _backward(grad: Tensor, x: Tensor, stats: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], m: int,
              divisor: float, C: float, k: float, mean_path: bool, var_path: bool,
              max_block: int, per_sm: Optional[int] = None) -> tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """Launches the backward kernel with `per_sm` (default BWD_PROGRAMS_PER_SM) programs per SM, each looping over
    its share of the rows: (dx, d weight, d bias), None for a parameter that is absent."""
    H = x.shape[-1]
    x2 = x.reshape(-1, H).contiguous()
    g2 = grad.reshape(-1, H).contiguous()
    R = x2.shape[0]
    dx = torch.empty_like(x2)
    ada = k != 0.0
    has_w, has_b = weight is not None and not ada, bias is not None and not ada
    programs = max(1, min(R, (per_sm or BWD_PROGRAMS_PER_SM) * _sm_count(x.device)))
    block, warps, one = _launch_settings(H, max_block)
    # Each program's partial gain/bias sums in float32.  One-block rows: every program stores its row (zeros when it
    # has no rows), so no memset launch; wide rows add into theirs, which must start at zero.
    alloc = torch.empty if one and R > 0 else torch.zeros
    part_w = alloc(programs if has_w else 1, H, device=x.device, dtype=torch.float32)
    part_b = alloc(programs if has_b else 1, H, device=x.device, dtype=torch.float32)
    if R > 0:
        rownorm_backward[(programs,)](
            g2, x2, stats, weight if has_w else x2, dx, part_w, part_b, R, H, m, divisor, C, k,
            triton.cdiv(R, programs), HAS_W=has_w, HAS_B=has_b, ADA=ada, MEAN_PATH=mean_path,
            VAR_PATH=var_path, BLOCK=block, ONE_BLOCK=one, num_warps=warps)
    dw = part_w.sum(0).to(weight.dtype) if has_w else None
    db = part_b.sum(0).to(bias.dtype) if has_b else None
    return dx.view(grad.shape), dw, db


class _RowNormFn(torch.autograd.Function):
    """The eager path: an autograd.Function costs about a third of a custom op's Python dispatch per forward+backward
    (measured on this CPU with an empty body: +30 us against +160 us over a bare clone), which on a GPU is what
    small norms are made of."""

    @staticmethod
    def forward(ctx, x, weight, bias, m, center, divisor, eps, inside, C, k, mean_path, var_path, max_block):
        y, stats = _forward(x, weight, bias, m, center, divisor, eps, inside, C, k, max_block)
        ctx.save_for_backward(x, stats, weight, bias)
        ctx.args = (m, divisor, C, k, mean_path, var_path, max_block)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, stats, weight, bias = ctx.saved_tensors
        dx, dw, db = _backward(grad, x, stats, weight, bias, *ctx.args)
        return (dx, dw, db) + (None,) * 10


# The same kernels as torch ops, for torch.compile: fake implementations and an autograd formula put them in the
# graph as two opaque ops (no graph break).
@torch.library.custom_op("normexp::triton_rownorm", mutates_args=())
def triton_rownorm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], m: int, center: bool,
                   divisor: float, eps: float, inside: bool, C: float, k: float, mean_path: bool,
                   var_path: bool, max_block: int = MAX_BLOCK) -> tuple[Tensor, Tensor]:
    """(output, float32 (rows, 3) statistics) of the variant given by the fused op's arguments (`fast.op_args`)."""
    return _forward(x, weight, bias, m, center, divisor, eps, inside, C, k, max_block)


@triton_rownorm.register_fake
def _(x, weight, bias, m, center, divisor, eps, inside, C, k, mean_path, var_path, max_block=MAX_BLOCK):
    rows = x.numel() // x.shape[-1] if x.shape[-1] else 0
    return torch.empty_like(x), x.new_empty((rows, 3), dtype=torch.float32)


@torch.library.custom_op("normexp::triton_rownorm_backward", mutates_args=())
def triton_rownorm_backward(grad: Tensor, x: Tensor, stats: Tensor, weight: Optional[Tensor],
                            bias: Optional[Tensor], m: int, divisor: float, C: float, k: float,
                            mean_path: bool, var_path: bool, max_block: int = MAX_BLOCK
                            ) -> tuple[Tensor, Tensor, Tensor]:
    """(dx, d weight, d bias); the parameter gradients are empty tensors where there is no such parameter."""
    dx, dw, db = _backward(grad, x, stats, weight, bias, m, divisor, C, k, mean_path, var_path, max_block)
    return dx, x.new_empty(0) if dw is None else dw, x.new_empty(0) if db is None else db


@triton_rownorm_backward.register_fake
def _(grad, x, stats, weight, bias, m, divisor, C, k, mean_path, var_path, max_block=MAX_BLOCK):
    ada = k != 0.0
    dw = torch.empty_like(weight) if weight is not None and not ada else x.new_empty(0)
    db = torch.empty_like(bias) if bias is not None and not ada else x.new_empty(0)
    return torch.empty_like(grad), dw, db


def _setup_context(ctx, inputs, output):
    x, weight, bias, m, _center, divisor, _eps, _inside, C, k, mean_path, var_path, max_block = inputs
    ctx.save_for_backward(x, output[1], weight, bias)
    ctx.args = (m, divisor, C, k, mean_path, var_path, max_block)


def _op_backward(ctx, grad, _grad_stats):
    x, stats, weight, bias = ctx.saved_tensors
    dx, dw, db = triton_rownorm_backward(grad, x, stats, weight, bias, *ctx.args)
    has_w, has_b = weight is not None and dw.numel() > 0, bias is not None and db.numel() > 0
    return (dx, dw if has_w else None, db if has_b else None) + (None,) * 10


triton_rownorm.register_autograd(_op_backward, setup_context=_setup_context)


def rownorm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], args: tuple,
            max_block: int = MAX_BLOCK) -> Tensor:
    """The variant with `fast.op_args` arguments, on a CUDA tensor (or a CPU one under the interpreter): the op
    under torch.compile, else the autograd.Function, or the forward kernel alone when nothing needs a gradient."""
    if torch.compiler.is_compiling():
        return triton_rownorm(x, weight, bias, *args, max_block)[0]
    wants = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if wants:
        return _RowNormFn.apply(x, weight, bias, *args, max_block)
    return _forward(x, weight, bias, *args[:7], max_block)[0]


def normalize(x: Tensor, spec, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None,
              max_block: int = MAX_BLOCK) -> Tensor:
    """Triton equivalent of `reference.normalize` (tests and benchmarks)."""
    from .fast import op_args

    return rownorm(x, weight, bias, op_args(spec, x.shape[-1]), max_block)
