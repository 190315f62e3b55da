"""The Triton kernels (normexp/norms/triton_kernels.py) against the float64 formula, on CPU in Triton's interpreter.

TRITON_INTERPRET=1 must be set before the kernels are defined (when normexp.norms.triton_rownorm is first imported);
nothing else in the suite imports that module.  The interpreter costs ~0.1 s per small call, so the inputs are a few
rows: what they must reach is every variant and convention, widths held in one block and widths looped over blocks
(odd ones, just past a block boundary, the statistic's end mid-block), several rows per backward program (the gain and
bias gradients' partial sums), and half-precision inputs.
"""
import os

os.environ["TRITON_INTERPRET"] = "1"  # noqa: E402  (before triton defines the kernels)

import pytest  # noqa: E402
import torch  # noqa: E402

from normexp.norms import VARIANTS, build_norm, reference, resolve  # noqa: E402
from normexp.norms import triton_rownorm as tr  # noqa: E402

ROWWISE = [v for v in VARIANTS if resolve(v).rowwise]  # not none, batchnorm, dyt, scalenorm
# (shape, max_block): one block (33 of 64 lanes), 11 rows over 8 backward programs (2, 2, 2, 2, 2, 1, 0, 0), leading dims,
# and rows looped over blocks: 130 = 2 * 64 + 2 and 17 = 16 + 1 (just past a boundary), 64 = 4 * 16 exactly.
SHAPES = [((11, 33), tr.MAX_BLOCK), ((2, 3, 130), 64), ((5, 17), 16), ((4, 64), 16)]


def grads(fn, x, w, b, g):
    """Output and the gradients of x, w, b (those given) of fn(x, w, b) under upstream gradient g."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, w, b)]
    y = fn(*leaves)
    y.backward(g)
    return [y.detach()] + [t.grad for t in leaves if t is not None]


def check(spec, shape, max_block, dtype=torch.float32, param_dtype=None, rtol=2e-6):
    """Triton against reference.normalize in float64 (of the same, rounded, inputs), relative to each tensor's max."""
    H = shape[-1]
    x = (torch.randn(shape) * 2 + 0.5).to(dtype)
    w = (torch.rand(H) + 0.5).to(param_dtype or dtype) if spec.gain else None
    b = torch.randn(H).to(param_dtype or dtype) if spec.bias else None
    g = torch.randn(shape).to(dtype)
    d = lambda t: None if t is None else t.double()  # noqa: E731
    want = grads(lambda *a: reference.normalize(a[0], spec, *a[1:]), d(x), d(w), d(b), d(g))
    got = grads(lambda *a: tr.normalize(a[0], spec, *a[1:], max_block=max_block), x, w, b, g)
    assert [t.dtype for t in got] == [t.dtype for t in (x, x, w, b) if t is not None]
    for name, a, e in zip(["y", "dx", "dw", "db"], got, want):
        err = float((a.double() - e).abs().max() / e.abs().max())
        assert err <= rtol, f"{spec.name} {shape} block {max_block} {dtype}: {name} off by {err:.1e}"


@pytest.mark.parametrize("convention", ["paper", "official"])
@pytest.mark.parametrize("name", ROWWISE)
def test_triton_matches_the_formula(name, convention):
    torch.manual_seed(3)
    for shape, max_block in SHAPES:
        check(resolve(name, convention=convention), shape, max_block)


@pytest.mark.parametrize("name, options", [
    ("layernorm", dict(unbiased=True, eps_mode="outside", eps=1e-3)),
    ("layernorm", dict(bias=False)),
    ("rmsnorm", dict(eps_mode="outside", bias=False)),
    ("adanorm", dict(C=2.0, k=0.5, unbiased=True)),
    ("prmsnorm", dict(p=0.3)),  # m = 39 of 130: the statistic ends inside the third block of 16
])
def test_triton_options(name, options):
    torch.manual_seed(4)
    spec = resolve(name, **options)
    for shape, max_block in [((6, 130), 16), ((3, 130), tr.MAX_BLOCK)]:
        check(spec, shape, max_block)


def test_triton_rows_just_past_the_default_block():
    """8193 = MAX_BLOCK + 1 columns: the streamed path at its real block width."""
    torch.manual_seed(5)
    for name in ("layernorm", "prmsnorm"):
        check(resolve(name), (2, tr.MAX_BLOCK + 1), tr.MAX_BLOCK, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["layernorm", "adanorm", "rmsnorm", "prmsnorm", "detach_mean"])
def test_triton_half_precision(name, dtype):
    """Half-precision inputs, float32 sums: within the rounding of the half-precision output (2^-8 for bfloat16);
    gain and bias both in the input's dtype and in float32 (mixed precision keeps float32 parameters)."""
    torch.manual_seed(6)
    tol = 8e-3 if dtype == torch.bfloat16 else 1e-3
    for shape, max_block, param_dtype in [((5, 33), tr.MAX_BLOCK, None), ((4, 40), 16, torch.float32)]:
        check(resolve(name), shape, max_block, dtype=dtype, param_dtype=param_dtype, rtol=tol)


def test_build_norm_runs_triton_and_records_it():
    torch.manual_seed(7)
    norm = build_norm("detach_var", 48, impl="triton")
    x = torch.randn(3, 48)
    torch.testing.assert_close(norm(x), reference.normalize(x, norm.spec))
    assert norm.impl_ran == "triton"
    auto = build_norm("detach_var", 48)
    auto(x)
    assert auto.impl_ran == "fused_cpu"  # auto never picks the interpreter
    with pytest.raises(RuntimeError, match="impl=triton cannot run on a cpu float64 input"):
        norm(x.double())
    gain = build_norm("rmsnorm", 48, impl="triton")
    xt = torch.randn(48, 3).t().requires_grad_()  # not contiguous: the op copies it, the backward too
    gain(xt).backward(torch.ones(3, 48))
    want = torch.autograd.grad(reference.normalize(xt, gain.spec, gain.weight, gain.bias), xt, torch.ones(3, 48))[0]
    torch.testing.assert_close(xt.grad, want)


def test_triton_op_compiles_without_graph_breaks():
    """The op with its fake implementation and autograd formula: one graph, same numbers."""
    torch.manual_seed(8)
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), build_norm("layernorm", 24, impl="triton"))
    x = torch.randn(4, 16)
    want = grads(lambda t, *_: model(t), x, None, None, torch.ones(4, 24))
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 0 and explained.graph_count == 1
    got = grads(lambda t, *_: torch.compile(model, fullgraph=True)(t), x, None, None, torch.ones(4, 24))
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e)


def test_cuda_benchmark_runs_end_to_end_here():
    """scripts/bench_norms_cuda.py's bench_cuda (what the GPU check imports), on CPU through the interpreter: every
    variant with impl triton/torch/auto, a row each, errors within 1e-5 (its timings mean nothing here)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from bench_norms_cuda import bench_cuda

    rows = bench_cuda(shapes=[(4, 64)], dtypes=("float32",), device="cpu", with_compile=False)
    got = {(r["name"], r["impl"]) for r in rows}
    for name in ROWWISE:
        assert {(name, "triton"), (name, "torch"), (name, "auto->fused_cpu")} <= got
    assert ("F.layer_norm", "torch") in got and all(r["ms"] > 0 for r in rows)
    assert all(r["err"] <= 1e-5 for r in rows if r["err"] is not None)


def test_kernels_compile_for_a_gpu():
    """Every specialisation through Triton's real compiler down to sm_90 machine code, no GPU needed (the interpreter
    alone would accept code the compiler rejects); in a subprocess without TRITON_INTERPRET."""
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("triton_gpu_compile.py")
    proc = subprocess.run([sys.executable, str(script), "90"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled 80 kernels for sm_90" in proc.stdout


def test_backward_programs_without_rows_store_zero_partial_sums():
    """The launcher hands the one-block backward uninitialised partial gain/bias rows (no memset launch): every
    program must store its row, zeros when the rows ran out before it.  9 rows over 8 programs of 2 rows: programs
    5-7 have none; their NaN-filled rows must come back zero and the sums equal the rows' own."""
    R, H = 9, 20
    x, g = torch.randn(R, H), torch.randn(R, H)
    stats = torch.stack([x.mean(1), x.var(1, unbiased=False).add(1e-5).rsqrt(), torch.zeros(R)], 1)
    w = torch.rand(H) + 0.5
    part_w, part_b = torch.full((8, H), float("nan")), torch.full((8, H), float("nan"))
    block, warps, one = tr._launch_settings(H, tr.MAX_BLOCK)
    assert one
    tr.rownorm_backward[(8,)](g, x, stats, w, torch.empty_like(x), part_w, part_b, R, H, H, float(H), 0.0, 0.0, 2,
                              HAS_W=True, HAS_B=True, ADA=False, MEAN_PATH=True, VAR_PATH=True, BLOCK=block,
                              ONE_BLOCK=True, num_warps=warps)
    assert not part_w.isnan().any() and not part_b.isnan().any()
    assert (part_w[5:] == 0).all() and (part_b[5:] == 0).all()
    y = (x - stats[:, :1]) * stats[:, 1:2]
    torch.testing.assert_close(part_w.sum(0), (g * y).sum(0))
    torch.testing.assert_close(part_b.sum(0), g.sum(0))


def test_breakdown_benchmark_runs_here_and_the_backward_is_exact_at_every_programs_per_sm(tmp_path):
    """scripts/bench_triton_breakdown.py (the GPU script that separates host time from device time and times the
    backward at several programs per SM), on CPU through the interpreter (one "SM"): each row present, and the
    backward at 3 programs per SM (3 rows each) equals the one at 1 (one program, 9 rows)."""
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from bench_triton_breakdown import main

    out = tmp_path / "breakdown.json"
    rows = main(["--device", "cpu", "--shapes", "9x100", "--dtypes", "float32", "--variants", "layernorm,adanorm",
                 "--per-sm", "1,3", "--out", str(out)])
    assert json.loads(out.read_text()) == rows
    for variant in ("layernorm", "adanorm"):
        whats = [r["what"] for r in rows if r["variant"] == variant]
        assert whats == ["F.layer_norm fwd+bwd", f"{variant} fwd+bwd (module)", f"{variant} forward kernel",
                         f"{variant} backward, 1/SM", f"{variant} backward, 3/SM"]
    assert all(r["wall_ms"] > 0 and r["graph_ms"] is None for r in rows)
    assert all(r["err"] <= 1e-6 for r in rows if "/SM" in r["what"])
