"""Where the Triton norms' time goes on a GPU (a benchmark, not a test; issue 23).

    python scripts/bench_triton_breakdown.py [--shapes 16384x1024,2048x4096] [--dtypes float32,bfloat16]
        [--variants layernorm,adanorm] [--per-sm 1,2,4,8,16] [--out breakdown.json]

The first GPU run measured every Triton variant at 1.9-5.8x F.layer_norm's forward+backward (H = 512-4096), with
bfloat16 no faster than float32: the gap was not explained.  Two causes fit that; this script tells them apart:
  host overhead  the Python around each launch (autograd.Function, allocations, the launch itself, the partial
                 sums' reduction).  Measured as `wall - graph`: `wall` is triton.testing.do_bench (launched from
                 Python each call), `graph` is do_bench_cudagraph (the same calls replayed from a CUDA graph: device
                 time only).  If the graph times of ours and F.layer_norm are close, the gap is host time.
  occupancy      the backward runs `per_sm` programs per SM (triton_rownorm.BWD_PROGRAMS_PER_SM: 1 when the gap was
                 measured, 8 since, flash-attention's value, unmeasured), each looping over its rows one after
                 another: with few programs, few warps per SM wait on memory.  The backward alone is
                 timed at every --per-sm; if its graph time falls with more programs, that is the fix (and the
                 value to set).  Its error against per_sm = 1 is printed too (gain/bias sums change order only).
Rows per (shape, dtype, variant): F.layer_norm fwd+bwd, the module fwd+bwd (impl=triton), our forward kernel alone
(`_forward`), our backward alone (`_backward`) at each per_sm.  On CPU (the test, under TRITON_INTERPRET=1) only
`wall` is timed (perf_counter) and `graph` is None.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from bench_norms_cuda import _fwd_bwd, _timer  # scripts/ is on sys.path when run as a script
from normexp.norms import build_norm, fast

SHAPES = [(16384, 1024), (8192, 4096), (336, 25088)]


def _graph_timer(device: torch.device):
    if device.type != "cuda":
        return lambda fn: None
    from triton.testing import do_bench_cudagraph

    def graph_ms(fn):
        try:
            return do_bench_cudagraph(fn, rep=100, return_mode="median")
        except Exception as exc:  # a callable that cannot be captured: say so, keep the wall time
            print(f"  (not capturable: {exc!r:.80})")
            return None
    return graph_ms


def breakdown(R: int, H: int, dtype: torch.dtype, variant: str, per_sm: list[int], device: torch.device) -> list[dict]:
    from normexp.norms import triton_rownorm as tr

    wall, graph = _timer(device), _graph_timer(device)
    torch.manual_seed(0)
    x = torch.randn(R, H, device=device, dtype=dtype).requires_grad_()
    g = torch.randn(R, H, device=device, dtype=dtype)
    w = torch.ones(H, device=device, dtype=dtype, requires_grad=True)
    b = torch.zeros(H, device=device, dtype=dtype, requires_grad=True)
    m = build_norm(variant, H, impl="triton").to(device, dtype)
    args = fast.op_args(m.spec, H)  # (m, center, divisor, eps, inside, C, k, mean_path, var_path)
    y, stats = tr._forward(x.detach(), m.weight, m.bias, *args[:7], tr.MAX_BLOCK)
    bwd_args = (args[0], args[2], args[5], args[6], args[7], args[8], tr.MAX_BLOCK)

    def backward(p):
        return lambda: tr._backward(g, x.detach(), stats, m.weight, m.bias, *bwd_args, per_sm=p)

    cases = {"F.layer_norm fwd+bwd": _fwd_bwd(lambda t: F.layer_norm(t, (H,), w, b, 1e-5), x, g, [w, b]),
             f"{variant} fwd+bwd (module)": _fwd_bwd(m, x, g, list(m.parameters())),
             f"{variant} forward kernel": lambda: tr._forward(x.detach(), m.weight, m.bias, *args[:7], tr.MAX_BLOCK)}
    cases.update({f"{variant} backward, {p}/SM": backward(p) for p in per_sm})
    reference = backward(1)()
    rows = []
    for what, fn in cases.items():
        row = dict(dtype=str(dtype).removeprefix("torch."), rows=R, H=H, variant=variant, what=what,
                   wall_ms=wall(fn), graph_ms=graph(fn), err=None)
        if what.endswith("/SM"):  # the same backward at another per_sm: equal up to summation order
            row["err"] = max(float((a - r).abs().max() / r.abs().max().clamp_min(1e-30))
                             for a, r in zip(fn(), reference) if a is not None)
        rows.append(row)
    return rows


def _print(rows: list[dict]) -> None:
    base = rows[0]
    print(f"\n## {base['dtype']} {base['rows']}x{base['H']} {base['variant']}")
    print(f"{'what':34s} {'wall ms':>8s} {'graph ms':>9s} {'host ms':>8s} {'err':>8s}")
    for r in rows:
        host = None if r["graph_ms"] is None else r["wall_ms"] - r["graph_ms"]
        cells = [f"{v:.3f}" if v is not None else "-" for v in (r["wall_ms"], r["graph_ms"], host)]
        err = "" if r["err"] is None else f"{r['err']:.1e}"
        print(f"{r['what']:34s} {cells[0]:>8s} {cells[1]:>9s} {cells[2]:>8s} {err:>8s}")


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", default=",".join(f"{r}x{h}" for r, h in SHAPES))
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--variants", default="layernorm,adanorm")
    ap.add_argument("--per-sm", default="1,2,4,8,16")
    ap.add_argument("--out", default=None, help="also write the rows as JSON here")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    per_sm = [int(p) for p in a.per_sm.split(",")]
    rows = []
    for shape in a.shapes.split(","):
        R, H = (int(v) for v in shape.split("x"))
        for dtype in a.dtypes.split(","):
            for variant in a.variants.split(","):
                part = breakdown(R, H, getattr(torch, dtype), variant, per_sm, device)
                _print(part)
                rows += part
                if a.out:  # after each part: a run stopped early keeps what it measured
                    with open(a.out, "w") as f:
                        json.dump(rows, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
