"""torch's own kernels (F.layer_norm; F.rms_norm on CUDA) for the variants whose formula is exactly
torch's: which variants take them on which device, that they compute the reference formula and its
gradients (run here on CPU, F.rms_norm included), and that the modules use them where the fused CPU
kernel does not apply (half precision here; CUDA alike)."""
import pickle

import pytest
import torch
from torch.autograd import gradcheck

from normexp.norms import VARIANTS, build_norm, reference, resolve
from normexp.norms.builtin import torch_kernel

ROWWISE = [v for v in VARIANTS if resolve(v).rowwise]  # the row-statistics variants (not none, batchnorm, dyt, scalenorm)
TORCH_SPECS = [("layernorm", {}), ("layernorm", {"convention": "official"}), ("layernorm_simple", {}),
               ("rmsnorm", {}), ("rmsnorm", {"bias": False}), ("prmsnorm", {"p": 1.0}),
               ("rmsnorm", {"convention": "official", "eps_mode": "inside"})]


def test_torch_kernels_exactly_where_the_formula_is_torchs():
    def have(device):
        return {(name, conv) for name in ROWWISE for conv in ("paper", "official")
                if torch_kernel(resolve(name, convention=conv), 16, device) is not None}
    assert have("cuda") == {("layernorm", "paper"), ("layernorm", "official"), ("layernorm_simple", "paper"),
                            ("rmsnorm", "paper")}
    # On CPU torch's rms_norm is not fused (slower than the reference formula), so only F.layer_norm.
    assert have("cpu") == have("cuda") - {("rmsnorm", "paper")}
    assert have("mps") == have("cpu")
    for name, opts in TORCH_SPECS:
        assert torch_kernel(resolve(name, **opts), 16, "cuda") is not None, (name, opts)
    # A partial statistic, eps outside, an unbiased variance: none is torch's formula.
    assert torch_kernel(resolve("prmsnorm", p=0.5), 16, "cuda") is None
    assert torch_kernel(resolve("layernorm", eps_mode="outside"), 16, "cuda") is None
    assert torch_kernel(resolve("layernorm", unbiased=True), 16, "cuda") is None


@pytest.mark.parametrize("name,opts", TORCH_SPECS)
def test_torch_kernel_is_the_reference_formula(name, opts):
    """float64 values and the gradients of x, gain and bias against reference.normalize, and gradcheck."""
    torch.manual_seed(3)
    for shape in [(3, 5, 17), (1, 2), (64, 40)]:
        H = shape[-1]
        spec = resolve(name, **opts)
        kernel = torch_kernel(spec, H, "cuda")  # the kernel CUDA would run, run here on CPU
        x = (torch.randn(*shape, dtype=torch.float64) * 3 + 0.5).requires_grad_()
        w = torch.randn(H, dtype=torch.float64, requires_grad=True) if spec.gain else None
        b = torch.randn(H, dtype=torch.float64, requires_grad=True) if spec.bias else None
        inputs = [t for t in (x, w, b) if t is not None]
        g = torch.randn(shape, dtype=torch.float64)
        got, want = kernel(x, w, b), reference.normalize(x, spec, w, b)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        for a, e in zip(torch.autograd.grad(got, inputs, g), torch.autograd.grad(want, inputs, g)):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
    spec, H = resolve(name, **opts), 6
    x = torch.randn(2, H, dtype=torch.float64, requires_grad=True)
    w = torch.randn(H, dtype=torch.float64, requires_grad=True) if spec.gain else None
    b = torch.randn(H, dtype=torch.float64, requires_grad=True) if spec.bias else None
    assert gradcheck(torch_kernel(spec, H, "cuda"), (x, w, b))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_modules_use_torch_kernels(dtype):
    """Outside the fused kernel's reach (here half precision on CPU) layernorm runs F.layer_norm,
    rmsnorm (on CPU) and DetachNorm the reference formula: DetachNorm's forward is layernorm_simple's,
    its gradient is not."""
    torch.manual_seed(4)
    tol = dict(rtol=2e-2, atol=2e-2) if dtype == torch.bfloat16 else dict(rtol=2e-3, atol=2e-3)
    x64 = torch.randn(6, 32, dtype=torch.float64) * 2 + 0.3
    g64 = torch.randn(6, 32, dtype=torch.float64)
    for name in ("layernorm", "rmsnorm", "detachnorm", "adanorm"):
        m = build_norm(name, 32)
        with torch.no_grad():
            for p in m.parameters():
                p.uniform_(0.5, 1.5)
        m = m.to(dtype)
        x = x64.to(dtype).requires_grad_()
        y = m(x)
        assert y.dtype == dtype
        if name == "layernorm":
            assert "NativeLayerNorm" in y.grad_fn.name()
        else:
            assert m._torch_kernels["cpu"] is None
            assert torch.equal(y, reference.normalize(x, m.spec, m.weight, m.bias))
        (dx,) = torch.autograd.grad(y, x, g64.to(dtype))
        # The float64 reference with the same (rounded) parameters and inputs.
        params = [None if p is None else p.detach().double().requires_grad_() for p in (m.weight, m.bias)]
        xr = x.detach().double().requires_grad_()
        yr = reference.normalize(xr, m.spec, *params)
        (dxr,) = torch.autograd.grad(yr, xr, g64)
        torch.testing.assert_close(y.double(), yr, **tol)
        torch.testing.assert_close(dx.double(), dxr, rtol=tol["rtol"], atol=tol["atol"] * float(dxr.abs().max()))


def test_module_with_a_torch_kernel_pickles():
    m = build_norm("layernorm", 8).to(torch.bfloat16)
    x = torch.randn(3, 8, dtype=torch.bfloat16)
    m2 = pickle.loads(pickle.dumps(m))
    assert m2._torch_kernels["cuda"] is not None and torch.equal(m2(x), m(x))
