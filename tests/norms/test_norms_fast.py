"""The fused CPU kernel against the torch-ops reference path, and the automatic fallback."""
import shutil

import pytest
import torch

from normexp.norms import VARIANTS, build_norm, fast, reference, resolve

ROWWISE = [v for v in VARIANTS if resolve(v).rowwise]  # the row-statistics variants (not none, batchnorm, dyt, scalenorm)


def test_kernel_builds_where_a_compiler_exists():
    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("no C++ compiler: the reference path is used (covered below)")
    assert fast.available()


def run(fn, x, spec, w, b, g):
    xs = x.clone().requires_grad_()
    ws = None if w is None else w.clone().requires_grad_()
    bs = None if b is None else b.clone().requires_grad_()
    y = fn(xs, spec, ws, bs)
    y.backward(g)
    return [t.detach() for t in [y, xs.grad] + [t.grad for t in (ws, bs) if t is not None]]


@pytest.mark.parametrize("convention", ["paper", "official"])
@pytest.mark.parametrize("name", ROWWISE)
def test_fast_matches_reference(name, convention):
    """float32 within 1e-5 relative of the float64 formula, for the outputs and every gradient;
    shapes cover vector tails (H = 130), many rows (gain/bias sums over blocks and threads), a
    non-contiguous input, the narrow-row backward (H = 64, 128), and outputs over the kernel's 4 MiB
    streaming-store bound (H = 128, 256; H = 264, where pRMSNorm's statistic ends mid-vector), and the
    wide-row backward, two rows at a time (H = 2050 with an odd row count; H = 2048 over the bound)."""
    if not fast.available():
        pytest.skip("kernel unavailable")
    torch.manual_seed(6)
    for shape, transpose in [((3, 7, 130), False), ((2000, 64), False), ((48, 96), True),
                             ((8200, 128), False), ((4100, 256), False), ((4608, 264), False),
                             ((37, 2050), False), ((520, 2048), False)]:
        H = shape[0] if transpose else shape[-1]
        spec = resolve(name, convention=convention)
        x = torch.randn(*shape) * 2 + 0.5
        x = x.t() if transpose else x
        assert x.is_contiguous() != transpose
        w = torch.rand(H) + 0.5 if spec.gain else None
        b = torch.randn(H) if spec.bias else None
        g = torch.randn(x.shape)
        d = lambda t: None if t is None else t.double()  # noqa: E731
        want = run(reference.normalize, d(x), spec, d(w), d(b), d(g))
        got = run(fast.normalize, x, spec, w, b, g)
        for a, e in zip(got, want):
            assert a.dtype == torch.float32
            scale = e.abs().max()
            torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5 * float(scale))


@pytest.mark.parametrize("name", ["layernorm", "adanorm", "detach_mean"])
def test_fast_statistics_when_row_means_jump(name):
    """The forward sums each row about the previous row's mean in one pass and sums again about its
    own mean when the two are far apart: rows whose means jump by ~30 std from row to row (each
    summed again; without that, the one-pass variance loses about 3 digits), then rows that share
    an offset of 20 std (the one pass alone), both within 1e-5 of the float64 formula."""
    if not fast.available():
        pytest.skip("kernel unavailable")
    torch.manual_seed(7)
    spec = resolve(name)
    R, H = 3000, 96
    offsets = torch.cat([torch.randn(R // 2, 1) * 30, torch.full((R - R // 2, 1), 20.0)])
    x = torch.randn(R, H) + offsets
    w = torch.rand(H) + 0.5 if spec.gain else None
    b = torch.randn(H) if spec.bias else None
    g = torch.randn(R, H)
    d = lambda t: None if t is None else t.double()  # noqa: E731
    want = run(reference.normalize, d(x), spec, d(w), d(b), d(g))
    got = run(fast.normalize, x, spec, w, b, g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a.double(), e, rtol=1e-5, atol=1e-5 * float(e.abs().max()))


def test_fast_forward_is_reproducible_and_near_batch_invariant():
    """The forward sums each row about the previous row's mean: the same input gives the same bits
    every call, and a row alone differs from the same row in a batch only in its last bits."""
    if not fast.available():
        pytest.skip("kernel unavailable")
    torch.manual_seed(8)
    m = build_norm("layernorm", 512)
    x = torch.randn(4096, 512) * 3 + 1
    with torch.no_grad():
        y = m(x)
        assert torch.equal(y, m(x))
        alone = torch.cat([m(x[i:i + 1]) for i in range(0, 4096, 97)])
    torch.testing.assert_close(alone, y[::97], rtol=1e-6, atol=1e-6)


def test_module_uses_the_fast_path_on_cpu_only_for_float(monkeypatch):
    calls, real = [], fast.rownorm
    monkeypatch.setattr(fast, "rownorm", lambda x, *a: calls.append(x.dtype) or real(x, *a))
    m = build_norm("adanorm", 8)
    m(torch.randn(2, 8))
    m(torch.randn(2, 8, dtype=torch.bfloat16))
    assert calls == ([torch.float32] if fast.available() else [])


def test_fallback_when_kernel_unavailable(monkeypatch):
    torch.manual_seed(7)
    x = torch.randn(5, 24, dtype=torch.float64)
    for name in ROWWISE:
        m = build_norm(name, 24).double()
        xa = x.clone().requires_grad_()
        ya = m(xa)
        ya.sum().backward()
        fused = ya.grad_fn.name()
        assert "RowNorm" in fused
        with monkeypatch.context() as mp:
            mp.setattr(fast, "available", lambda: False)
            xb = x.clone().requires_grad_()
            yb = m(xb)
            assert yb.grad_fn.name() != fused
            yb.sum().backward()
        torch.testing.assert_close(ya, yb)
        torch.testing.assert_close(xa.grad, xb.grad)


def test_saved_memory():
    """DetachNorm keeps only 1/s per row; LayerNorm-simple keeps its own output, not the input."""
    if not fast.available():
        pytest.skip("kernel unavailable")
    x = torch.randn(64, 32, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        build_norm("detachnorm", 32)(x)
        assert [tuple(t.shape) for t in saved] == [(64, 3)]
        saved.clear()
        y = build_norm("layernorm_simple", 32)(x)
        assert any(t.data_ptr() == y.data_ptr() for t in saved)
        assert not any(t.data_ptr() == x.data_ptr() for t in saved)


def test_fused_gradients_only_for_what_is_asked_and_without_autograd():
    """The C++ autograd node computes the gain/bias sums only for the gradients requested, a frozen
    gain still gives the bias gradient, and inference mode runs the same forward."""
    if not fast.available():
        pytest.skip("kernel unavailable")
    torch.manual_seed(8)
    spec = resolve("layernorm")
    x, g = torch.randn(37, 24, dtype=torch.float64), torch.randn(37, 24, dtype=torch.float64)
    w, b = torch.rand(24, dtype=torch.float64) + 0.5, torch.randn(24, dtype=torch.float64)
    xr, wr, br = (t.clone().requires_grad_() for t in (x, w, b))
    want = torch.autograd.grad(reference.normalize(xr, spec, wr, br), [xr, wr, br], g)
    xf, wf, bf = (t.clone().requires_grad_() for t in (x, w, b))
    y = fast.normalize(xf, spec, wf, bf)
    (gx,) = torch.autograd.grad(y, [xf], g, retain_graph=True)
    torch.testing.assert_close(gx, want[0])
    gw, gb = torch.autograd.grad(y, [wf, bf], g)
    torch.testing.assert_close([gw, gb], list(want[1:]))
    y = fast.normalize(xf, spec, w, bf)  # frozen gain
    torch.testing.assert_close(torch.autograd.grad(y, [xf, bf], g), [want[0], want[2]])
    with torch.inference_mode():
        torch.testing.assert_close(fast.normalize(x, spec, w, b), reference.normalize(x, spec, w, b))


@pytest.mark.parametrize("name", ROWWISE)
def test_no_autograd_node_when_nothing_needs_a_gradient(name):
    """Under no_grad, or with nothing requiring a gradient, the op runs the forward kernel alone: no
    autograd node, the same output as the differentiable path, for 2-D and 3-D inputs."""
    if not fast.available():
        pytest.skip("kernel unavailable")
    torch.manual_seed(9)
    m = build_norm(name, 40)
    for x in (torch.randn(6, 40), torch.randn(3, 5, 40)):
        want = m(x.clone().requires_grad_())
        assert want.grad_fn is not None
        with torch.no_grad():
            got = m(x)
        assert got.grad_fn is None and got.shape == x.shape
        torch.testing.assert_close(got, want.detach(), rtol=0, atol=0)
    m.requires_grad_(False)
    assert m(x).grad_fn is None


def test_fused_path_refuses_a_second_order_gradient():
    if not fast.available():
        pytest.skip("kernel unavailable")
    x = torch.randn(3, 8, requires_grad=True)
    y = build_norm("adanorm", 8)(x)
    with pytest.raises(RuntimeError, match="once differentiable.*reference.normalize"):
        torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)


def test_double_backward_needs_reference_path():
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    spec = resolve("adanorm")
    (gx,) = torch.autograd.grad(reference.normalize(x, spec).pow(2).sum(), x, create_graph=True)
    gx.sum().backward()
    assert torch.isfinite(x.grad).all()
