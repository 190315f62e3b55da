"""A norm of the user's own (norm.target): checked when the factory is made, and then a norm site like any built-in:
in models through the factory, under swap_norms/swap_norms_with, in the grad-stats hook, in state dicts, pickled."""
import pickle

import pytest
import torch
from torch import nn

from normexp.engine.grad_stats import GradStats
from normexp.norms import NormConfig, build_norm, norm_factory, swap_norms, swap_norms_with
from normexp.norms.plugin import PROBE_WIDTH, PluginError, default_name
from tests.norms.test_norms_swap import encoder, norm_sites, train_step

HERE = __name__  # targets below are this module's classes: tests.norms.test_norms_plugin.<Name>


class MeanAbsNorm(nn.Module):
    """A user's norm: g * (x - mean) / (mean |x - mean| + alpha)."""

    def __init__(self, dim, alpha=1e-5):
        super().__init__()
        self.alpha = alpha
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        c = x - x.mean(-1, keepdim=True)
        return self.gain * c / (c.abs().mean(-1, keepdim=True) + self.alpha)


def make_mean_abs(dim, **options):  # a factory function works as well as a class
    return MeanAbsNorm(dim, **options)


class FixedWidth(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(512))  # ignores the width it is given

    def forward(self, x):
        return x * self.weight


def widening(dim):
    return nn.Linear(dim, 2 * dim)


def not_a_module(dim):
    return torch.ones(dim)


NOT_CALLABLE = 3


def custom(target, name="mine", **options):
    return NormConfig(name=name, target=f"{HERE}.{target}", options=options)


def test_factory_builds_the_target_with_its_options():
    for target in ("MeanAbsNorm", "make_mean_abs"):
        m = norm_factory(custom(target, alpha=0.5))(24)
        assert isinstance(m, MeanAbsNorm) and m.alpha == 0.5 and m.gain.shape == (24,)
    x = torch.randn(3, 24)
    c = x - x.mean(-1, keepdim=True)
    torch.testing.assert_close(m(x), c / (c.abs().mean(-1, keepdim=True) + 0.5))
    assert default_name("mypkg.norms.MyNorm") == default_name("mypkg.norms:MyNorm") == "MyNorm"


@pytest.mark.parametrize("cfg, message", [
    (NormConfig(name="mine", target="no_such_pkg.norms.MyNorm"), "cannot import module 'no_such_pkg.norms'"),
    (custom("Missing"), f"'{HERE}' has no attribute 'Missing'"),
    (custom("NOT_CALLABLE"), "int is not callable"),
    (custom("not_a_module"), "returned 'Tensor', not an nn.Module"),
    (custom("FixedWidth"), f"built at width {PROBE_WIDTH}, its forward on a (2, 3, {PROBE_WIDTH}) input failed"),
    (custom("widening"), f"maps a (2, 3, {PROBE_WIDTH}) input to (2, 3, {2 * PROBE_WIDTH})"),
    (custom("MeanAbsNorm", beta=1.0), "unexpected keyword argument 'beta'"),
    (custom("MeanAbsNorm", name="layernorm"), "norm.name='layernorm' is a built-in variant"),
    (NormConfig(name="mine", target=f"{HERE}.MeanAbsNorm", eps=1e-3), "norm.eps belong to the built-in variants"),
    (NormConfig(name="mine", target=f"{HERE}.MeanAbsNorm", impl="triton"), "a custom norm runs its own code"),
    (NormConfig(name="mine", target=f"{HERE}.MeanAbsNorm", options=[1]), "norm.options must be a mapping"),
    (NormConfig(name="layernorm", options={"alpha": 1}), "norm.options is for a custom norm"),
])
def test_a_bad_target_fails_when_the_factory_is_made_naming_it(cfg, message):
    with pytest.raises(ValueError, match=None) as e:
        norm_factory(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)
    if cfg.target:
        assert isinstance(e.value, PluginError) and str(e.value).startswith(f"norm.target={cfg.target}: ")


def test_custom_norms_are_norm_sites_everywhere():
    torch.manual_seed(0)
    factory = norm_factory(custom("MeanAbsNorm", alpha=0.1))
    built = []
    model = encoder(d=16)
    assert swap_norms_with(model, lambda w: built.append(factory(w)) or built[-1]) == 7
    assert sum(isinstance(m, MeanAbsNorm) for m in model.modules()) == 7 and not norm_sites(model)
    # The grad-stats hook sees each site's input gradient.
    stats = GradStats(model, built)
    stats.start_step(True)
    x = torch.randn(2, 5, 16, requires_grad=True)  # the first site takes x itself
    model(x).pow(2).mean().backward()
    assert len(stats.collect(1)["sites"]) == 7
    # State dicts: a second model built by the same factory takes the first one's weights and computes the same.
    with torch.no_grad():
        for m in built:
            m.gain.mul_(1.5)
    twin = encoder(d=16)
    swap_norms_with(twin, factory)
    twin.load_state_dict(model.state_dict())
    model.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(twin(x), model(x))  # eval + no_grad: torch's fused path stays off
    # A model holding custom norms can be swapped again, e.g. back to a built-in.
    assert swap_norms(model, "layernorm") == 7 and not any(isinstance(m, MeanAbsNorm) for m in model.modules())
    model.train()
    train_step(model, lambda: model(x).pow(2).mean())


def test_factory_pickles_for_other_processes():
    factory = pickle.loads(pickle.dumps(norm_factory(custom("MeanAbsNorm", alpha=0.2))))
    assert factory(8).alpha == 0.2


def test_builtin_modules_are_not_marked():
    assert not hasattr(build_norm("layernorm", 8), "_normexp_width")
