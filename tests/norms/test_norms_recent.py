"""DyT and ScaleNorm: exact against their papers' formulas (forward and hand-derived gradients, float64), gradcheck,
their options and init, swapped into torch's and fairseq's Transformers, and a real tiny run."""
import math

import pytest
import torch
from torch import nn

from normexp.norms import NormConfig, build_norm, norm_factory, swap_norms
from normexp.norms.recent import DyT, ScaleNorm
from tests.conftest import only_record, run_cli
from tests.norms.test_norms_swap import encoder, fairseq_iwslt_de_en, fairseq_train_step, norm_sites


def randomised(module: nn.Module) -> nn.Module:
    """Parameters away from their init, so that a formula that ignored one would show."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + 1.0)
    return module


def dyt_formula(x, alpha, gamma, beta):
    # Zhu et al. 2025 Eq. 1: DyT(x) = gamma * tanh(alpha * x) + beta, with tanh written out.
    e = torch.exp(2 * alpha * x)
    return gamma * (e - 1) / (e + 1) + beta


def scalenorm_formula(x, g, eps):
    # Nguyen & Salazar 2019 Eq. 7: ScaleNorm(x; g) = g * x / ||x||, with ||x|| clamped below at eps.
    norm = x.pow(2).sum(-1, keepdim=True).sqrt()
    return g * x / torch.where(norm > eps, norm, torch.full_like(norm, eps))


def test_dyt_forward_and_gradients_are_the_formula():
    torch.manual_seed(0)
    m = randomised(build_norm("dyt", 12).double())
    x = torch.randn(3, 5, 12, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, 12, dtype=torch.float64)
    y = m(x)
    a, w, b = m.alpha.detach(), m.weight.detach(), m.bias.detach()
    torch.testing.assert_close(y, dyt_formula(x, a, w, b), rtol=1e-12, atol=1e-12)
    y.backward(g)
    t = torch.tanh(a * x.detach())
    rows = (0, 1)
    # Hand-derived: d tanh(u)/du = 1 - tanh(u)^2.
    torch.testing.assert_close(x.grad, g * w * a * (1 - t * t), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.alpha.grad, (g * w * x.detach() * (1 - t * t)).sum().reshape(1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.weight.grad, (g * t).sum(rows), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.bias.grad, g.sum(rows), rtol=1e-12, atol=1e-12)


def test_scalenorm_forward_and_gradients_are_the_formula():
    torch.manual_seed(1)
    m = randomised(build_norm("scalenorm", 12).double())
    x = torch.randn(3, 5, 12, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, 12, dtype=torch.float64)
    y = m(x)
    s = m.scale.detach()
    torch.testing.assert_close(y, scalenorm_formula(x, s, 1e-5), rtol=1e-12, atol=1e-12)
    y.backward(g)
    xd = x.detach()
    n = xd.norm(dim=-1, keepdim=True)
    gx = (g * xd).sum(-1, keepdim=True)
    # Hand-derived, for ||x|| > eps: dx = g_s / n * (g - x (g.x) / n^2), dg_s = sum (g.x) / n.
    torch.testing.assert_close(x.grad, s / n * (g - xd * gx / n ** 2), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(m.scale.grad, (gx / n).sum(), rtol=1e-12, atol=1e-12)


def test_scalenorm_clamps_a_zero_row_at_eps():
    m = build_norm("scalenorm", 4, eps=1e-3).double()
    x = torch.zeros(2, 4, dtype=torch.float64, requires_grad=True)
    y = m(x)
    y.sum().backward()
    assert torch.equal(y, torch.zeros_like(y)) and torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0 / 1e-3))  # below eps: g * x / eps, g = sqrt(4)


@pytest.mark.parametrize("name", ["dyt", "scalenorm"])
def test_gradcheck(name):
    torch.manual_seed(2)
    m = randomised(build_norm(name, 6).double())
    x = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    params = tuple(m.parameters())

    def f(x, *ps):
        return torch.func.functional_call(m, dict(zip([n for n, _ in m.named_parameters()], ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params))
    assert torch.autograd.gradgradcheck(f, (x, *params))


def test_init_and_options():
    dyt = build_norm("dyt", 8)
    assert isinstance(dyt, DyT) and dyt.alpha.item() == 0.5  # the paper's default alpha_0
    assert torch.equal(dyt.weight, torch.ones(8)) and torch.equal(dyt.bias, torch.zeros(8))
    assert build_norm("dyt", 8, alpha0=2.0).alpha.item() == 2.0
    assert norm_factory(NormConfig(name="dyt", alpha0=0.25))(4).alpha.item() == 0.25
    sn = build_norm("scalenorm", 9)
    assert isinstance(sn, ScaleNorm) and sn.scale.item() == 3.0 and sn.eps == 1e-5  # g = sqrt(d)
    assert sum(p.numel() for p in sn.parameters()) == 1
    assert build_norm("scalenorm", 4, eps=0.1).eps == 0.1
    with pytest.raises(ValueError, match="does not take option.*alpha0"):
        build_norm("scalenorm", 4, alpha0=1.0)
    with pytest.raises(ValueError, match="alpha0 must be a finite number"):
        build_norm("dyt", 4, alpha0=math.inf)
    with pytest.raises(ValueError, match="expects a last dimension of 4"):
        build_norm("dyt", 4)(torch.randn(2, 5))


def test_torch_encoder_eval_matches_python_path():
    """Eval + no_grad would take torch's fused encoder path, which hard-codes LayerNorm: the swap keeps it off."""
    torch.manual_seed(3)
    for name in ("dyt", "scalenorm"):
        model = encoder(norm_first=False).eval()
        assert swap_norms(model, name) == 7
        x = torch.randn(2, 5, 32)
        with torch.no_grad():
            got = model(x)
            torch.backends.mha.set_fastpath_enabled(False)
            try:
                want = model(x)
            finally:
                torch.backends.mha.set_fastpath_enabled(True)
        torch.testing.assert_close(got, want)


def test_fairseq_transformer_iwslt_de_en_sites_unchanged():
    torch.manual_seed(4)
    model, vocab = fairseq_iwslt_de_en()
    assert len(norm_sites(model)) == 32
    assert swap_norms(model, "dyt") == 32
    assert sum(isinstance(m, DyT) for m in model.modules()) == 32
    assert swap_norms(model, "scalenorm") == 32  # a swapped model swaps again: the same sites
    assert sum(isinstance(m, ScaleNorm) for m in model.modules()) == 32 and not norm_sites(model)
    fairseq_train_step(model, vocab)


def test_tiny_run_with_dyt(tmp_path):
    run_cli("experiment=tiny/rt", "norm=dyt", "trainer.max_steps=15", "trainer.progress=false", f"out_root={tmp_path}")
    rec = only_record(tmp_path)
    assert rec["status"] == "completed" and rec["norm"] == "dyt" and rec["config"]["norm"]["alpha0"] == 0.5
    assert rec["extra"]["norm_sites"] > 0 and rec["test"]["accuracy"] > 0
