"""Speed of every normexp.norms variant relative to torch's eager F.layer_norm (a benchmark, not a test).

    python scripts/bench_norms.py [--rounds 7] [--cpu-time] [--shapes 8192x512,4096x1024,32768x128]
    python scripts/bench_norms.py --device cuda [--shapes ...] [--dtypes float32,bfloat16]   (bench_norms_cuda.py:
        every variant and implementation, Triton included, against F.layer_norm, F.rms_norm, Liger-Kernel, compile)

For each shape: forward + backward time (input, gain and bias gradients, via autograd.grad so no
gradient accumulation is timed) as a ratio to eager F.layer_norm with gain and bias on the same
input, in the same process; fp32 on CPU, and on CUDA when a GPU is present.  Each candidate is
timed in alternation with the baseline (baseline, candidate, baseline, ... 5 times each; the
fastest call of each), so that the two times of a ratio are taken milliseconds apart.  Every round
times every candidate so, in an order that rotates from round to round, and RMSNorm against our
LayerNorm the same way (the "paired" line: the RMSNorm paper's claim; the "vs our LN" column is a
ratio of two medians, noisier).  The ratio is the median over rounds; "min-max" is their range, a
noise gauge: on a machine busy with other work, prefer --cpu-time.

Also printed:
  floor     the memory-traffic floor of a fused norm: forward reads x and writes y, backward reads
            the upstream gradient and x (or y) and writes dx: 5 tensors, against the bandwidth of
            an elementwise add (3 tensors) measured in the same rounds: floor = 5/3 * t(add).  Per
            variant, the same with its own count: 4 tensors when it saves no (rows, H) tensor for
            backward (DetachNorm keeps only 1/s), else 5.  Variants with equal counts (RMSNorm and
            LayerNorm among them) share a floor: a fused kernel at the floor costs the same for both.
  torch-ops the same variant through the pure-PyTorch path (reference.py): what CUDA and
            machines without a compiler run.
  err       max |ours - formula| / max |formula| over output and gradients, formula in float64.
  saved MB  what the variant keeps for backward at that shape; "extra" leaves out tensors that
            alias the input or the output (those exist anyway).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from normexp.engine.cpu_memory import keep_freed_memory
from normexp.norms import VARIANTS, build_norm, fast, reference

SHAPES = [(8192, 512), (4096, 1024), (32768, 128)]
TARGET, RMS_TARGET, ERR_TARGET = 0.65, 0.8, 1e-5


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


CLOCK = time.perf_counter


def paired_times(base, fn, device, reps=5):
    """Fastest of `reps` calls of `base` and of `fn`, called in alternation after one untimed call
    of each (which settles the allocator): a ratio of the two compares moments milliseconds apart,
    so that load from other work on the machine, which comes and goes over seconds, mostly cancels.
    The minimum is the call least disturbed by that load."""
    base(), fn()
    sync(device)
    times = ([], [])
    for _ in range(reps):
        for f, out in zip((base, fn), times):
            t = CLOCK()
            f()
            sync(device)
            out.append(CLOCK() - t)
    return min(times[0]), min(times[1])


def fwd_bwd(module_or_fn, x, g, params):
    def run():
        y = module_or_fn(x)
        torch.autograd.grad(y, [x, *params], g)
    return run


def saved_bytes(fn, x):
    """(all, extra) bytes of the tensors autograd keeps for backward; extra excludes x and y."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = fn(x)
    alias = {x.untyped_storage().data_ptr(), y.untyped_storage().data_ptr()}
    seen, total, extra = set(), 0, 0
    for t in saved:
        st = t.untyped_storage()
        if st.data_ptr() in seen:
            continue
        seen.add(st.data_ptr())
        total += st.nbytes()
        extra += 0 if st.data_ptr() in alias else st.nbytes()
    return total / 2**20, extra / 2**20


def max_rel_err(module, x, g):
    """Output and gradients of `module` (float32) against its own formula in float64."""
    params = [p for p in module.parameters()]
    xa = x.detach().requires_grad_()
    got = [module(xa)]
    got += torch.autograd.grad(got[0], [xa, *params], g)
    xd = x.detach().double().requires_grad_()
    pd = [p.detach().double().requires_grad_() for p in params]
    spec = module.spec
    w = pd[0] if spec.gain else None
    b = pd[-1] if spec.bias else None
    want = [reference.normalize(xd, spec, w, b)]
    want += torch.autograd.grad(want[0], [xd, *pd], g.double())
    return max(float((a.detach().double() - e.detach()).abs().max() / e.detach().abs().max())
               for a, e in zip(got, want))


def bench_shape(shape, device, rounds, with_reference):
    torch.manual_seed(0)
    R, H = shape
    x = torch.randn(R, H, device=device).requires_grad_()
    g = torch.randn(R, H, device=device)
    w = torch.ones(H, device=device, requires_grad=True)
    b = torch.zeros(H, device=device, requires_grad=True)
    cands = {"F.layer_norm": fwd_bwd(lambda t: F.layer_norm(t, (H,), w, b, 1e-5), x, g, [w, b]),
             "F.rms_norm": fwd_bwd(lambda t: F.rms_norm(t, (H,), w, 1e-5), x, g, [w])}
    modules = {name: build_norm(name, H).to(device) for name in VARIANTS}
    for name, m in modules.items():
        cands[name] = fwd_bwd(m, x, g, list(m.parameters()))
        if with_reference and m.spec.rowwise:  # the row-statistics variants have a torch-ops reference
            cands[f"{name}/torch-ops"] = fwd_bwd(
                lambda t, m=m: reference.normalize(t, m.spec, m.weight, m.bias), x, g, list(m.parameters()))
    xd = x.detach()
    cands["add"] = lambda: xd + g
    # (baseline, candidate) pairings: every candidate against F.layer_norm, and RMSNorm against our
    # LayerNorm directly for the RMSNorm paper's claim (a ratio of two medians of ratios is noisier).
    pairings = [("F.layer_norm", n) for n in cands if n != "F.layer_norm"] + [("layernorm", "rmsnorm")]
    ratios = {p: [] for p in pairings}
    base = []  # F.layer_norm's times, for the header
    for r in range(rounds):
        # The order rotates every round, so that no pairing always follows the same one (whose
        # leftovers in the caches and the allocator would then bias it the same way every round).
        for p in pairings[r % len(pairings):] + pairings[:r % len(pairings)]:
            tb, tc = paired_times(cands[p[0]], cands[p[1]], device)
            ratios[p].append(tc / tb)
            if p[0] == "F.layer_norm":
                base.append(tb)
    # The median over rounds resists rounds disturbed by other work; the range is the noise gauge.
    med = {c: statistics.median(v) for (b, c), v in ratios.items() if b == "F.layer_norm"}
    spread = {c: (min(v), max(v)) for (b, c), v in ratios.items() if b == "F.layer_norm"}
    med["F.layer_norm"], spread["F.layer_norm"] = 1.0, (1.0, 1.0)
    rms_vs_ln = ratios[("layernorm", "rmsnorm")]
    floor = 5 / 3 * med["add"]

    print(f"\n## {device.type} fp32 {R}x{H}: eager F.layer_norm fwd+bwd {min(base) * 1e3:.2f} ms fastest, "
          f"{statistics.median(base) * 1e3:.2f} ms median ({rounds} rounds); floor {floor:.2f}x")
    print(f"{'variant':18s} {'ratio':>6s} {'min-max':>11s} {'floor':>6s} {'vs our LN':>9s} {'torch-ops':>9s} "
          f"{'err':>8s} {'saved MB':>8s} {'extra MB':>8s}")
    fails = []
    for n in ["F.layer_norm", "F.rms_norm", *VARIANTS]:
        lo, hi = spread[n]
        ref = med.get(f"{n}/torch-ops")
        m = modules.get(n)
        if m is not None:
            fn = m
        elif n == "F.layer_norm":
            fn = lambda t: F.layer_norm(t, (H,), w, b, 1e-5)  # noqa: E731
        else:
            fn = lambda t: F.rms_norm(t, (H,), w, 1e-5)  # noqa: E731
        total, extra = saved_bytes(fn, x)
        fused = m is not None and m.spec.rowwise
        err = max_rel_err(m, x, g) if fused else None
        # Tensors of x's size moved by forward+backward: x, y, upstream gradient, dx, and the saved one if any.
        moved = 4 + (total * 2**20 >= x.nbytes) if fused else None
        vfloor = f"{moved / 3 * med['add']:.2f}" if fused else ""
        print(f"{n:18s} {med[n]:6.2f} {lo:5.2f}-{hi:<5.2f} {vfloor:>6s} {med[n] / med['layernorm']:9.2f} "
              f"{'' if ref is None else f'{ref:.2f}':>9s} {'' if err is None else f'{err:.1e}':>8s} "
              f"{total:8.1f} {extra:8.1f}")
        if fused:
            if device.type == "cpu" and med[n] > TARGET:
                fails.append(f"{n} {med[n]:.2f}x > {TARGET}")
            if err is not None and err > ERR_TARGET:
                fails.append(f"{n} error {err:.1e} > {ERR_TARGET}")
    rms = statistics.median(rms_vs_ln)
    if device.type == "cpu" and rms > RMS_TARGET:
        fails.append(f"rmsnorm {rms:.2f}x of our layernorm > {RMS_TARGET}")
    print(f"add: {med['add']:.2f}x;  rmsnorm / our layernorm, paired: {rms:.2f} ({min(rms_vs_ln):.2f}-{max(rms_vs_ln):.2f})")
    print(f"targets (CPU: each variant <= {TARGET}x, rmsnorm <= {RMS_TARGET}x of our layernorm, err <= {ERR_TARGET}): "
          f"{'all met' if not fails else 'MISSED: ' + '; '.join(fails)}")


def shapes_arg(text: str) -> list[tuple[int, int]]:
    try:
        shapes = [tuple(int(n) for n in item.lower().split("x")) for item in text.split(",")]
    except ValueError:
        shapes = []
    # H >= 16: pRMSNorm's default p = 1/16 needs p * H >= 1.
    if not shapes or any(len(s) != 2 or s[0] < 1 or s[1] < 16 for s in shapes):
        raise argparse.ArgumentTypeError(f"expected ROWSxH[,ROWSxH...] with ROWS >= 1 and H >= 16 (pRMSNorm's p = 1/16 "
                                         f"needs p * H >= 1), e.g. 4096x1024; got {text!r}")
    return shapes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds per shape (each times every candidate)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="one thread, timed by its CPU time: stable ratios on a machine busy with other "
                             "work (wall-clock ratios there mostly measure the scheduler); CPU only")
    parser.add_argument("--shapes", type=shapes_arg, default=SHAPES,
                        help="comma-separated ROWSxH (default: the issue's three, 16 MiB each; smaller inputs stay "
                             "in cache, where per-call and per-element work weigh more than the memory traffic)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: every implementation on the GPU (scripts/bench_norms_cuda.py) instead")
    parser.add_argument("--dtypes", default="float32,bfloat16", help="with --device cuda: comma-separated dtypes")
    args = parser.parse_args()
    if args.device == "cuda":
        from bench_norms_cuda import SHAPES as CUDA_SHAPES, bench_cuda  # scripts/ is on sys.path when run as a script

        if not torch.cuda.is_available():
            parser.error("--device cuda: no CUDA device visible to torch")
        bench_cuda(CUDA_SHAPES if args.shapes is SHAPES else args.shapes, tuple(args.dtypes.split(",")))
        return
    if args.cpu_time:
        global CLOCK
        CLOCK = time.thread_time
        torch.set_num_threads(1)
    # Repeated calls reuse warm pages, as a training process does (normexp.cli.train sets the same): otherwise each call
    # pays thousands of page faults, which differ between variants for reasons unrelated to them.
    allocator = keep_freed_memory()
    t = time.perf_counter()
    kernel = fast.available()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}; "
          f"fused CPU kernel: {'yes' if kernel else 'NO (pure-PyTorch path)'} "
          f"(load/build {time.perf_counter() - t:.1f} s)")
    print(f"clock: {'CPU time of the one thread' if args.cpu_time else 'wall'}; allocator: {allocator}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs")
    cuda = torch.cuda.is_available() and not args.cpu_time
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if cuda else [])
    for device in devices:
        for shape in args.shapes:
            bench_shape(shape, device, args.rounds, with_reference=True)


if __name__ == "__main__":
    main()
