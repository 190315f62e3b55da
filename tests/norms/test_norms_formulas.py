"""Every variant against its written formula, its gradient, and the papers' gradient theorem."""
import math
import zlib

import pytest
import torch
from torch.autograd import gradcheck

from normexp.norms import VARIANTS, build_norm, fast, reference, resolve

ROWWISE = [v for v in VARIANTS if resolve(v).rowwise]  # the row-statistics variants (not none, batchnorm, dyt, scalenorm)
CONVENTIONS = ["paper", "official"]
SHAPES = [(1, 2), (3, 5, 2), (1, 17), (2, 3, 17), (4, 64)]


def paths():
    """The two implementations of a row-wise variant: the fused kernel and the torch-ops formula."""
    return {"fast": fast.normalize, "reference": reference.normalize}


def p_for(H: int) -> float:
    # 0.3 * 17 = 5.1 separates ceil (6) from floor (5); H = 2 needs p * H >= 1.
    return 0.3 if H >= 4 else 0.5


def options(name, convention, H):
    opts = {"convention": convention}
    if name == "prmsnorm":
        opts["p"] = p_for(H)
    if name == "adanorm":
        opts.update(C=1.7, k=0.1)
    return opts


def formula(x, name, convention, H, w=None, b=None):
    """The formulas of docs/papers.md §1 written out independently of the library, in float64."""
    official = convention == "official"
    if name in ("rmsnorm", "prmsnorm"):
        p = p_for(H) if name == "prmsnorm" else 1.0
        m = (int(H * p) if official else math.ceil(round(p * H, 9))) if name == "prmsnorm" else H
        ms = (x[..., :m] ** 2).mean(-1, keepdim=True)
        s = ms.sqrt() + 1e-8 if official else (ms + 1e-5).sqrt()
        y = x / s
    else:
        mu = x.mean(-1, keepdim=True)
        unbiased = official and name != "layernorm"
        var = ((x - mu) ** 2).sum(-1, keepdim=True) / (H - int(unbiased))
        s = var.sqrt() + 1e-5 if unbiased else (var + 1e-5).sqrt()
        y = (x - mu) / s
        if name == "adanorm":
            return 1.7 * (1 - 0.1 * y) * y
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("name", ROWWISE)
def test_forward_equals_formula(name, convention, shape):
    torch.manual_seed(zlib.crc32(repr((name, convention, shape)).encode()))
    H = shape[-1]
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 0.5
    m = build_norm(name, H, **options(name, convention, H)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    want = formula(x, name, convention, H, m.weight, m.bias)
    torch.testing.assert_close(m(x), want, rtol=1e-12, atol=1e-12)
    for impl, fn in paths().items():
        torch.testing.assert_close(fn(x, m.spec, m.weight, m.bias), want, rtol=1e-12, atol=1e-12, msg=impl)


def test_none_and_batchnorm_forward():
    x = torch.randn(4, 3, 8, dtype=torch.float64)
    assert build_norm("none", 8)(x) is x and not list(build_norm("none", 8).parameters())
    bn = build_norm("batchnorm", 8).double()
    flat = x.reshape(-1, 8)
    want = (flat - flat.mean(0)) / (flat.var(0, unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(bn(x), want.view_as(x))
    torch.testing.assert_close(bn.running_mean, 0.1 * flat.mean(0))
    bn.eval()
    torch.testing.assert_close(bn(x), (x - bn.running_mean) / (bn.running_var + 1e-5).sqrt())


def test_batchnorm_unbiased_option_divides_the_batch_variance_by_B_minus_1():
    """unbiased=True: training normalizes with var / (B - 1); the running statistics move exactly as torch's."""
    torch.manual_seed(0)
    x = torch.randn(4, 8, dtype=torch.float64)  # B = 4: Ba et al.'s small batch
    torch_bn, bn = build_norm("batchnorm", 8).double(), build_norm("batchnorm", 8, unbiased=True).double()
    want = (x - x.mean(0)) / (x.var(0, unbiased=True) + 1e-5).sqrt()
    out = bn(x)
    torch.testing.assert_close(out, want)
    assert not torch.allclose(torch_bn(x), want)  # torch's (the default) divides by B
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(torch_bn, name))
    (out * torch.randn_like(out)).sum().backward()  # gain and bias are trained
    assert bn.weight.grad is not None and bn.bias.grad is not None
    bn.eval()
    torch.testing.assert_close(bn(x), torch_bn.eval()(x))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn.train()(x[:1])


def surrogate(x, x0, spec, w, b):
    """The variant's formula with every stop-gradient quantity frozen at the point x0: its true
    derivative at x0 is, by definition, the gradient the variant must produce there."""
    H = x.shape[-1]
    m = spec.stat_count(H)

    def stats(z, mu=None):
        zs = z[..., :m]
        if mu is None:
            mu = zs.mean(-1, keepdim=True) if spec.center else torch.zeros_like(zs[..., :1])
        var = ((zs - mu) ** 2).sum(-1, keepdim=True) / spec.divisor(H)
        s = (var + spec.eps).sqrt() if spec.eps_mode == "inside" else var.sqrt() + spec.eps
        return mu, s

    mu0, s0 = stats(x0)
    mu = mu0 if spec.detach_mean else stats(x)[0]
    s = s0 if spec.detach_var else stats(x, mu)[1]
    y = (x - mu) / s
    if spec.k is not None:
        return spec.C * (1 - spec.k * (x0 - mu0) / s0) * y
    return y * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("name", ROWWISE)
def test_gradcheck(name, convention, impl):
    """gradcheck of x, gain and bias.  Where a variant stops a gradient, finite differences of its
    forward differentiate the stopped path too, so the numerical side is taken from `surrogate`
    (values) while the analytical side is still the variant's own backward."""
    torch.manual_seed(0)
    fn = paths()[impl]
    for shape in [(3, 6), (2, 2)]:
        H = shape[-1]
        spec = resolve(name, **options(name, convention, H))
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        w = torch.randn(H, dtype=torch.float64, requires_grad=True) if spec.gain else None
        b = torch.randn(H, dtype=torch.float64, requires_grad=True) if spec.bias else None
        stops = spec.detach_mean or spec.detach_var or spec.k is not None
        x0 = x.detach().clone()

        def f(x, w, b):
            out = fn(x, spec, w, b)
            return out - out.detach() + surrogate(x, x0, spec, w, b).detach() if stops else out

        assert gradcheck(f, (x, w, b), eps=1e-6, atol=1e-7)
        # The surrogate is the right reference: it agrees with the forward at x0 ...
        torch.testing.assert_close(surrogate(x0, x0, spec, w, b), fn(x0, spec, w, b))


@pytest.mark.parametrize("name", ["none", "batchnorm"])
def test_gradcheck_module_variants(name):
    m = build_norm(name, 5).double()
    x = torch.randn(3, 2, 5, dtype=torch.float64, requires_grad=True)
    # fast_mode: torch's float64 CPU batch norm makes the full Jacobian take ~10 s
    assert gradcheck(m, (x,), eps=1e-6, atol=1e-7, fast_mode=True)


def row_moments(t):
    return t.mean(-1), t.var(-1, unbiased=False)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_adanorm_paper_gradient_theorem(impl):
    """docs/papers.md §1.3 with g = dl/dy: detaching the mean keeps mean(dx) = mean(g)/sigma, detaching
    the std keeps var(dx) = var(g)/sigma^2; the live derivatives re-centre and shrink the gradient."""
    torch.manual_seed(1)
    x = torch.randn(50, 64, dtype=torch.float64) * 2 + 1
    g = torch.randn(50, 64, dtype=torch.float64) + 0.3
    sigma = x.std(-1, unbiased=False)
    g_mean, g_var = row_moments(g)
    fn = paths()[impl]
    dx = {}
    for name in ["layernorm_simple", "detach_mean", "detach_var", "detachnorm"]:
        xr = x.clone().requires_grad_()
        fn(xr, resolve(name, eps=1e-12), None, None).backward(g)
        dx[name] = row_moments(xr.grad)
    close = dict(rtol=1e-8, atol=1e-10)
    mean, var = dx["layernorm_simple"]
    torch.testing.assert_close(mean, torch.zeros_like(mean), **close)
    assert (var <= g_var / sigma**2 * (1 + 1e-9)).all()
    mean, var = dx["detach_mean"]
    torch.testing.assert_close(mean, g_mean / sigma, **close)
    assert (var <= g_var / sigma**2 * (1 + 1e-9)).all()
    mean, var = dx["detach_var"]
    torch.testing.assert_close(mean, torch.zeros_like(mean), **close)
    torch.testing.assert_close(var, g_var / sigma**2, **close)
    mean, var = dx["detachnorm"]
    torch.testing.assert_close(mean, g_mean / sigma, **close)
    torch.testing.assert_close(var, g_var / sigma**2, **close)


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_adanorm_phi_carries_no_gradient(impl):
    """AdaNorm's backward is LayerNorm-simple's applied to g * C * (1 - k * y): phi is a constant."""
    torch.manual_seed(2)
    fn = paths()[impl]
    x = torch.randn(8, 32, dtype=torch.float64)
    g = torch.randn(8, 32, dtype=torch.float64)
    ada = resolve("adanorm", C=2.0, k=0.1)
    xa = x.clone().requires_grad_()
    fn(xa, ada, None, None).backward(g)
    xs = x.clone().requires_grad_()
    y = fn(xs, resolve("layernorm_simple"), None, None)
    y.backward(g * 2.0 * (1 - 0.1 * y.detach()))
    torch.testing.assert_close(xa.grad, xs.grad, rtol=1e-12, atol=1e-12)
    # Not vacuous: letting the gradient through phi changes it.
    xl = x.clone().requires_grad_()
    y = fn(xl, resolve("layernorm_simple"), None, None)
    (2.0 * (1 - 0.1 * y) * y).backward(g)
    assert (xl.grad - xa.grad).abs().max() > 1e-3


def test_rmsnorm_equals_layernorm_with_gain_at_zero_mean():
    torch.manual_seed(3)
    x = torch.randn(6, 48, dtype=torch.float64)
    x = x - x.mean(-1, keepdim=True)
    ln, rms = build_norm("layernorm", 48).double(), build_norm("rmsnorm", 48, bias=False).double()
    with torch.no_grad():
        ln.weight.normal_()
        rms.weight.copy_(ln.weight)
    torch.testing.assert_close(rms(x), ln(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torch_layernorm_and_rmsnorm(dtype):
    torch.manual_seed(4)
    H = 40
    x = torch.randn(3, 7, H, dtype=dtype) * 2 + 1
    g = torch.randn_like(x)
    pairs = [(build_norm("layernorm", H), torch.nn.LayerNorm(H)),
             (build_norm("layernorm_simple", H), torch.nn.LayerNorm(H, elementwise_affine=False)),
             (build_norm("rmsnorm", H, bias=False), torch.nn.RMSNorm(H, eps=1e-5))]
    for ours, theirs in pairs:
        ours, theirs = ours.to(dtype), theirs.to(dtype)
        with torch.no_grad():
            for p, q in zip(ours.parameters(), theirs.parameters()):
                p.normal_()
                q.copy_(p)
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        ya, yb = ours(xa), theirs(xb)
        torch.testing.assert_close(ya, yb)
        ya.backward(g)
        yb.backward(g)
        torch.testing.assert_close(xa.grad, xb.grad)
        for p, q in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(p.grad, q.grad)
