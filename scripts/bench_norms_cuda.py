"""GPU speed of every normexp.norms variant and implementation (a benchmark, not a test; issue 23).

    python scripts/bench_norms.py --device cuda          (or this file; or, from Python with scripts/ on sys.path:)
    from bench_norms_cuda import bench_cuda; rows = bench_cuda(shapes=[(8192, 1024)], dtypes=("float32",))

For each shape and dtype: forward + backward (input, gain and bias gradients through autograd.grad) of
  F.layer_norm (with gain and bias: the baseline of every ratio), F.rms_norm (with gain),
  Liger-Kernel's LigerLayerNorm / LigerRMSNorm (the peer; when `liger_kernel` is installed),
  every row-wise variant through impl=triton, impl=torch (F.layer_norm/F.rms_norm or the torch-ops formula) and
  impl=auto (named by what it ran), and torch.compile of the torch-ops formula (reference.normalize).
Timed by triton.testing.do_bench on CUDA (median of its repetitions, L2 flushed between calls); elsewhere (the CPU
test of this script, under TRITON_INTERPRET=1) by perf_counter.  Each row: name, impl, ms, ratio to F.layer_norm,
and for our kernels the error against the float64 formula (max over output and gradients, relative to each tensor's
max).  Targets (issue 23): every variant's triton fwd+bwd <= 1.15x F.layer_norm at H = 512-4096, fp32 and bf16, and
rmsnorm <= 1.0x Liger's RMSNorm.  Default shapes: 32 MiB of float32 per tensor, H in {512, 1024, 4096, 25088}
(25088 = the MNIST CNN's norm sites: 32 x 28 x 28).
"""
from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from bench_norms import max_rel_err  # the same error measure as the CPU benchmark (scripts/ is on sys.path)
from normexp.norms import VARIANTS, build_norm, reference, resolve

ROWWISE = [v for v in VARIANTS if resolve(v).rowwise]  # not none, batchnorm, dyt, scalenorm
SHAPES = [(16384, 512), (8192, 1024), (2048, 4096), (336, 25088)]
DTYPES = ("float32", "bfloat16")
TARGET, LIGER_TARGET = 1.15, 1.0


def _timer(device: torch.device):
    if device.type == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, warmup=25, rep=100, return_mode="median")

    def wall_ms(fn, reps=1):
        fn()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times) * 1e3
    return wall_ms


def _fwd_bwd(fn, x, g, params):
    return lambda: torch.autograd.grad(fn(x), [x, *params], g)


def _liger(H, device, dtype):
    """LigerLayerNorm and LigerRMSNorm of width H, or {} without liger_kernel."""
    try:
        from liger_kernel.transformers import LigerLayerNorm, LigerRMSNorm
    except ImportError:
        return {}
    try:  # the peer is optional: a signature change there must not stop the benchmark
        try:  # newer versions overwrite the upstream gradient in place by default, which the timing loop reuses
            rms = LigerRMSNorm(H, eps=1e-5, in_place=False)
        except TypeError:
            rms = LigerRMSNorm(H, eps=1e-5)
        mods = {"liger LayerNorm": LigerLayerNorm(H, eps=1e-5).to(device, dtype), "liger RMSNorm": rms.to(device, dtype)}
        probe = torch.randn(2, H, device=device, dtype=dtype, requires_grad=True)
        for m in mods.values():  # one fwd+bwd each: a peer that fails here (e.g. its kernels under Triton's
            m(probe).sum().backward()  # interpreter) is left out instead of stopping the table
        return mods
    except Exception as exc:
        print(f"liger_kernel installed but not usable here: {exc!r}"[:300])
        return {}


def _candidates(R, H, device, dtype, with_compile):
    """{(name, impl): (fwd+bwd callable, module or None)}."""
    torch.manual_seed(0)
    x = torch.randn(R, H, device=device, dtype=dtype).requires_grad_()
    g = torch.randn(R, H, device=device, dtype=dtype)
    w = torch.ones(H, device=device, dtype=dtype, requires_grad=True)
    b = torch.zeros(H, device=device, dtype=dtype, requires_grad=True)
    out = {("F.layer_norm", "torch"): (_fwd_bwd(lambda t: F.layer_norm(t, (H,), w, b, 1e-5), x, g, [w, b]), None),
           ("F.rms_norm", "torch"): (_fwd_bwd(lambda t: F.rms_norm(t, (H,), w, 1e-5), x, g, [w]), None)}
    for name, m in _liger(H, device, dtype).items():
        out[(name, "liger")] = (_fwd_bwd(m, x, g, list(m.parameters())), None)
    for name in ROWWISE:
        for impl in ("triton", "torch", "auto"):
            m = build_norm(name, H, impl=impl).to(device, dtype)
            out[(name, impl)] = (_fwd_bwd(m, x, g, list(m.parameters())), m)
        if with_compile:
            m = build_norm(name, H, impl="torch").to(device, dtype)
            compiled = torch.compile(lambda t, m=m: reference.normalize(t, m.spec, m.weight, m.bias))
            out[(name, "compiled reference")] = (_fwd_bwd(compiled, x, g, list(m.parameters())), None)
    return out, x, g


def bench_cuda(shapes=SHAPES, dtypes=DTYPES, device="cuda", with_compile=True) -> list[dict]:
    """One dict per (shape, dtype, candidate): device, dtype, rows, H, name, impl (for impl=auto: "auto->" and what
    it ran), ms, ratio (to F.layer_norm on the same input), err (our modules only), and target: whether a triton row
    meets its target (None where there is none).  Prints the table as it goes.  Cost, estimated (not measured): a
    few seconds of timing per shape and dtype, plus Triton's first compilation of each kernel specialisation (about
    a second each, cached in ~/.triton) and, with_compile, one torch.compile per variant, shape and dtype (8 per
    shape and dtype, several seconds each): pass with_compile=False where device time is short."""
    device = torch.device(device)
    time_ms = _timer(device)
    # Every compiled formula is the same lambda's code object, whose compiled versions (one per variant, shape and
    # dtype) dynamo caches together: past its default limit of 8 it would silently run the rest eagerly.
    torch._dynamo.config.recompile_limit = 1024
    rows = []
    for R, H in shapes:
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            torch._dynamo.reset()
            cands, x, g = _candidates(R, H, device, dtype, with_compile)
            times = {key: time_ms(fn) for key, (fn, _) in cands.items()}
            base = times[("F.layer_norm", "torch")]
            liger_rms = times.get(("liger RMSNorm", "liger"))
            print(f"\n## {device.type} {dtype_name} {R}x{H}: F.layer_norm fwd+bwd {base:.3f} ms")
            print(f"{'variant':18s} {'impl':24s} {'ms':>8s} {'ratio':>6s} {'err':>8s}  target")
            for (name, impl), (_, module) in cands.items():
                ms = times[(name, impl)]
                err = max_rel_err(module, x, g) if module is not None and dtype == torch.float32 else None
                if impl == "auto":
                    impl = f"auto->{module.impl_ran}"
                target = None  # the targets are GPU targets
                if device.type != "cuda":
                    pass
                elif impl == "triton" and H <= 4096:
                    target = ms / base <= TARGET
                if device.type == "cuda" and impl == "triton" and name == "rmsnorm" and liger_rms is not None:
                    target = (target is not False) and ms <= LIGER_TARGET * liger_rms
                rows.append(dict(device=device.type, dtype=dtype_name, rows=R, H=H, name=name, impl=impl, ms=ms,
                                 ratio=ms / base, err=err, target=target))
                print(f"{name:18s} {impl:24s} {ms:8.3f} {ms / base:6.2f} {'' if err is None else f'{err:.1e}':>8s}  "
                      f"{'' if target is None else 'met' if target else 'MISSED'}")
    return rows


if __name__ == "__main__":
    bench_cuda()
