"""Fused CPU path: a small C++ kernel (csrc/: row loops in row_kernels.h and row_vec.h, the gain's
backward for rows of 64 and 128 floats in narrow_rows.h, the op in rownorm.cpp) with a hand-derived
backward, both in one C++ autograd op (`torch.ops.normexp_norms.rownorm`).

Why: on CPU every variant written in torch ops costs 2.5-6x a fused LayerNorm (each op is a full
pass over memory), so the choice of variant would change the cost of an experiment.  One fused
forward and one fused backward cover all row-wise variants.

Backward.  With y = (x - mean) * r, r = 1 / s(v), v = sum_{j<m} (x_j - mean)^2 / D, and
gy = dL/dy (gy = g * w for a gain; gy = g * C * (1 - k * y) for AdaNorm, whose factor is
detached):
    dL/dx_i = r * gy_i                                   (direct path)
              - r * sum_j gy_j / H                       (through the mean; dv/dmean = 0)
              - [i < m] vc * sum_j (gy_j * y_j) * y_i / D  (through v)
with vc = r when s = sqrt(v + eps) and vc = 1 / sqrt(v) when s = sqrt(v) + eps
(dr/dv = -r^3 / 2, respectively -r^2 / (2 sqrt(v))).  DetachNorm and friends drop the term of the
detached statistic; the RMS family has no mean term and m < H for pRMSNorm.

Build: compiled on first use with the system C++ compiler against torch's headers (about 30 s),
cached under torch's extension root ($TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions),
keyed by a hash of the sources, flags and torch version, so it is built once per machine and torch.
If anything fails (no compiler, unusual platform) `available()` is False, a warning says why, and
modules use the torch paths (builtin.py, reference.py).  The kernel covers contiguous-able float32/float64 CPU tensors;
everything else (CUDA, half precision) takes torch's kernel where the formula is torch's
(builtin.py), else the reference path.  It is once-differentiable: a
backward with create_graph=True through it raises; the reference path supports higher orders.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from ..atomic import atomic_path
from .spec import NormSpec

_CSRC = Path(__file__).with_name("csrc")
_SRC = _CSRC / "rownorm.cpp"  # includes row_kernels.h
# ISA flags matching the kernels torch itself dispatches to on this CPU (never -march=native:
# the cache directory may be shared between machines, and the hash below includes these flags).
_ISA = {"AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx2", "-mfma"],
        "AVX2": ["-mavx2", "-mfma"]}


def _compile(out: Path) -> None:
    from torch.utils import cpp_extension as ce

    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX)")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    flags = ["-O3", "-std=c++20", "-fPIC", "-shared", "-fopenmp", f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
             *_ISA.get(torch.backends.cpu.get_cpu_capability(), [])]
    libdirs = ce.library_paths()
    sources = [p.read_text() for p in sorted([*_CSRC.glob("*.cpp"), *_CSRC.glob("*.h")])]
    tag = hashlib.sha256("\0".join([*sources, cxx, torch.__version__, *flags]).encode())
    target = out / f"rownorm_{tag.hexdigest()[:16]}.so"
    if not target.exists():
        # Build to a private name and rename: concurrent first uses (pytest-xdist, several jobs)
        # each build a complete library and the atomic rename leaves one valid file.
        with atomic_path(target, suffix=".so") as tmp:
            cmd = [cxx, *flags, *[f"-I{p}" for p in ce.include_paths()], str(_SRC), "-o", str(tmp),
                   *[f"-L{p}" for p in libdirs], "-lc10", "-ltorch_cpu",
                   *[f"-Wl,-rpath,{p}" for p in libdirs]]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"compiling {_SRC.name} failed:\n{proc.stderr[-3000:]}")
    torch.ops.load_library(str(target))


@functools.cache
def available() -> bool:
    """Build (or load the cached build of) the kernel once per process; False if impossible."""
    try:
        from torch.utils.cpp_extension import get_default_build_root

        root = os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()  # as torch's own
        _compile(Path(root) / "normexp_norms")
        _register_for_tracing()
        return True
    except Exception as exc:  # any failure means "use the reference path", never a crash
        warnings.warn(f"normexp.norms: fused CPU kernel unavailable, using the pure-PyTorch path ({exc})")
        return False


_FLOATS = (torch.float32, torch.float64)


def supports(x: Tensor, weight: Optional[Tensor] = None, bias: Optional[Tensor] = None) -> bool:
    """Whether the fused kernel handles these tensors (and could be built).  Called on every
    forward: plain attribute tests, cheapest first (at a 4x512 input the whole forward is ~20 us)."""
    return (x.is_cpu and x.dtype in _FLOATS and x.numel() > 0 and not x.is_nested
            and (weight is None or (weight.is_cpu and weight.dtype == x.dtype))
            and (bias is None or (bias.is_cpu and bias.dtype == x.dtype))
            and _available())


def op_args(spec: NormSpec, H: int) -> tuple:
    """The fused op's arguments after (x, weight, bias) for `spec` at width H: the statistic's
    length, centering, divisor, eps and its placement, AdaNorm's C and k, and which statistics
    are differentiated through.  A module computes them once (per call they cost microseconds,
    which at small inputs is a sizeable share of a norm)."""
    return (spec.stat_count(H), spec.center, float(spec.divisor(H)), spec.eps, spec.eps_mode == "inside",
            spec.C or 1.0, spec.k or 0.0, spec.center and not spec.detach_mean, not spec.detach_var)


def rownorm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], args: tuple) -> Tensor:
    """The fused op with `op_args`; call only when `supports(x, weight, bias)`.  Under torch.compile
    the traceable pair of ops (`_register_for_tracing`) instead of the one-node op."""
    if torch.compiler.is_compiling():
        return torch.ops.normexp_norms.rownorm_fwd(x, weight, bias, *args)[0]
    return torch.ops.normexp_norms.rownorm(x, weight, bias, *args)


def constant_to_compile(fn):
    """`torch.compiler.assume_constant_result` without its `import torch._dynamo`, which at import time made up
    half of `normexp-train`'s start (2.5 of 5.6 s measured): that decorator only sets this attribute, which
    dynamo reads when it traces (tests/norms/test_norms_dispatch.py checks the two still agree)."""
    fn._dynamo_marked_constant = True
    return fn


@constant_to_compile
def _available() -> bool:
    """`available()`, a constant to torch.compile (which would otherwise trace into functools.cache)."""
    return available()


def _register_for_tracing() -> None:
    """Fake implementations and the autograd formula of the C++ ops `rownorm_fwd` / `rownorm_bwd`, so that
    torch.compile traces them as ops (the eager one-node `rownorm` keeps its autograd inside C++, which
    fake tensors cannot run).  Once per process, after the library is loaded."""
    fwd, bwd = "normexp_norms::rownorm_fwd", "normexp_norms::rownorm_bwd"

    @torch.library.register_fake(fwd)
    def _(x, weight, bias, m, center, divisor, eps, inside, C, k, mean_path, var_path):
        return torch.empty_like(x), x.new_empty((x.numel() // x.shape[-1], 3))

    @torch.library.register_fake(bwd)
    def _(grad, x, stats, weight, has_bias, m, divisor, mean_path, var_path, C, k):
        def like_weight(wanted):
            return torch.empty_like(weight) if wanted and weight is not None else grad.new_empty(0)
        return torch.empty_like(grad), like_weight(True), like_weight(has_bias)

    def setup_context(ctx, inputs, output):
        x, weight, bias, m, _center, divisor, _eps, _inside, C, k, mean_path, var_path = inputs
        ctx.save_for_backward(x, output[1], weight)
        ctx.args = (bias is not None, m, divisor, mean_path, var_path, C, k)

    def backward(ctx, grad, _grad_stats):
        x, stats, weight = ctx.saved_tensors
        has_bias, *rest = ctx.args
        dx, dw, db = torch.ops.normexp_norms.rownorm_bwd(grad, x, stats, weight, has_bias, *rest)
        return dx, dw if weight is not None else None, db if has_bias and weight is not None else None, *[None] * 9

    torch.library.register_autograd(fwd, backward, setup_context=setup_context)


def normalize(x: Tensor, spec: NormSpec, weight: Optional[Tensor] = None,
              bias: Optional[Tensor] = None) -> Tensor:
    """Fused equivalent of `reference.normalize`; call only when `supports(x, weight, bias)`."""
    if not available():
        raise RuntimeError("normexp.norms fused kernel unavailable; use reference.normalize")
    return rownorm(x, weight, bias, op_args(spec, x.shape[-1]))
