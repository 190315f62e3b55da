"""Which implementation runs a row-wise norm: `impl` = "auto" | "fused_cpu" | "triton" | "torch".

  fused_cpu  the C++ kernel (fast.py): CPU float32/float64 tensors.
  triton     the Triton kernels (triton_rownorm.py): CUDA float32/bfloat16/float16 tensors (on CPU only
             under Triton's interpreter, TRITON_INTERPRET=1: for tests, about 1 s per call).
  torch      torch's fused kernel where the variant's formula is torch's (F.layer_norm for layernorm and
             paper layernorm_simple; F.rms_norm for paper rmsnorm on CUDA; builtin.py), else the torch-ops
             formula (reference.py), the only path with higher-order gradients.
  auto       per input: fused_cpu where it runs; on CUDA torch's fused kernel where there is one, else
             triton when it is installed and measured faster than the torch-ops formula
             (`cuda_auto_takes_triton`), else torch.  On an H200 (docs/gpu.md) F.layer_norm took
             0.17-0.54x our Triton kernel's time at H = 512-4096, so torch's kernels stay first;
             scripts/bench_norms.py --device cuda remeasures, and this rule should follow it.

An explicit choice that cannot run raises with one line saying why: at build time what does not depend
on the input (triton not installed, the C++ kernel not buildable), at the first call the rest.  A run
checks the device before any work (normexp/cli/checks.py: triton off CUDA, fused_cpu off the CPU).
"""
from __future__ import annotations

import functools
import importlib.util
import os
from typing import Optional

import torch
from torch import Tensor

from . import fast

IMPLS = ("auto", "fused_cpu", "triton", "torch")


@functools.cache
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def check_impl(impl: str) -> None:
    """What can be checked before any input: the name, and that the chosen kernel can exist here."""
    if impl not in IMPLS:
        raise ValueError(f"norm impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl == "triton" and not triton_installed():
        raise ValueError("norm impl 'triton' needs the triton package: pip install 'normexp[gpu]' (or impl=auto)")
    if impl == "fused_cpu" and not fast.available():
        raise ValueError("norm impl 'fused_cpu': the C++ kernel could not be built here (see the warning above); "
                         "use impl=auto or impl=torch")


_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@fast.constant_to_compile  # a constant to torch.compile, which would trace into the cache
def triton_takes_device(device_type: str) -> bool:
    """Whether the Triton kernels run on this device type (CUDA; CPU under the interpreter, for tests)."""
    interpreted = device_type == "cpu" and os.environ.get("TRITON_INTERPRET") == "1"
    return triton_installed() and (device_type == "cuda" or interpreted)


def cuda_auto_takes_triton(spec) -> bool:
    """Whether impl=auto runs a variant without a torch kernel through Triton on CUDA.  Not when it detaches
    the variance: on an H200 (docs/gpu.md, bench_norms_cuda.py, 4 shapes x float32/bfloat16) the torch-ops
    formula beat our Triton kernels for detachnorm in 8 of 8 cases and for detach_var in 6 of 8, while Triton
    won for adanorm and prmsnorm in 8 of 8 and for detach_mean in 5 of 8."""
    return not spec.detach_var


def triton_runs(x: Tensor) -> bool:
    """Whether the Triton kernels take this input (CUDA, or CPU under the interpreter; float32/16, bfloat16)."""
    return x.dtype in _TRITON_DTYPES and x.numel() > 0 and triton_takes_device(x.device.type)


def triton_rownorm(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], args: tuple) -> Tensor:
    from . import triton_rownorm as tr  # imports triton: only when this implementation runs

    return tr.rownorm(x, weight, bias, args)


def why_not(impl: str, name: str, x: Tensor) -> str:
    """The one-line reason an explicit `impl` cannot run `name` on `x`."""
    where = f"a {x.device.type} {str(x.dtype).replace('torch.', '')} input"
    if impl == "fused_cpu":
        return (f"norm '{name}' with impl=fused_cpu cannot run on {where}: the C++ kernel takes CPU float32/float64 "
                f"tensors; use impl=auto")
    return (f"norm '{name}' with impl=triton cannot run on {where}: the Triton kernels take CUDA float32/bfloat16/"
            f"float16 tensors (CPU only under TRITON_INTERPRET=1, for tests); use impl=auto")


def impl_counts(modules) -> dict[str, int]:
    """How many of `modules` (norm sites) ran each implementation on their latest call, for a run's record:
    e.g. {"fused_cpu": 12}; "not run" for a site never called.  Modules without `impl_ran` are torch code."""
    counts: dict[str, int] = {}
    for m in modules:
        impl = getattr(m, "impl_ran", "torch") or "not run"
        counts[impl] = counts.get(impl, 0) + 1
    return counts
