import functools

import pytest
import torch

from normexp.models.mlp import MLP, MLPConfig
from normexp.norms import VARIANTS, build_norm


def _mlp(name="layernorm", **cfg):
    return MLP(MLPConfig(**cfg), functools.partial(build_norm, name), in_features=784, out_features=10)


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_builds_trains_and_flattens_images(name):
    torch.manual_seed(0)
    model = _mlp(name, hidden=[32, 16])
    images = torch.randn(6, 1, 28, 28)  # MNIST batches are (N, 1, 28, 28)
    logits = model(images)
    assert logits.shape == (6, 10)
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in model.linears.parameters())
    assert torch.equal(model(images.flatten(1)), model(images.view(6, 28, 28)))


def test_one_norm_per_hidden_layer_between_linear_and_relu():
    sites = []

    def norm(dim):
        sites.append(build_norm("layernorm", dim))
        return sites[-1]

    model = MLP(MLPConfig(hidden=[1000, 1000]), norm, 784, 10)
    assert [s.dim for s in sites] == [1000, 1000] and list(model.norms) == sites
    assert [(m.in_features, m.out_features) for m in [*model.linears, model.out]] == [(784, 1000), (1000, 1000), (1000, 10)]
    seen = {}
    model.norms[0].register_forward_hook(lambda m, args, out: seen.update(norm_in=args[0], norm_out=out))
    model.linears[1].register_forward_hook(lambda m, args, out: seen.update(next_in=args[0]))
    x = torch.randn(3, 784)
    model(x)
    torch.testing.assert_close(seen["norm_in"], model.linears[0](x))  # the norm takes the summed inputs
    torch.testing.assert_close(seen["next_in"], torch.relu(seen["norm_out"]))  # then the nonlinearity
    # Ba et al.: no norm on the logits; LayerNorm over a row has zero mean, the logits do not
    assert model(x).mean(-1).abs().max() > 1e-3


def test_weight_init_centre_and_spread():
    torch.manual_seed(0)
    plain = _mlp(hidden=[1000, 1000])
    torch.manual_seed(0)
    shifted = _mlp(hidden=[1000, 1000], weight_init_mean=0.2)
    for a, b in zip([*plain.linears, plain.out], [*shifted.linears, shifted.out]):
        torch.testing.assert_close(b.weight, a.weight + 0.2)  # the same draw, re-centred
        torch.testing.assert_close(b.bias, a.bias)
    bound = 1 / 784**0.5  # torch's default: uniform(±1/sqrt(fan_in))
    assert plain.linears[0].weight.abs().max() <= bound and plain.linears[0].weight.std() > 0.5 * bound
    torch.manual_seed(0)
    normal = _mlp(hidden=[1000, 1000], weight_init_mean=0.2, weight_init_std=0.05)
    w = normal.linears[1].weight
    assert w.mean().item() == pytest.approx(0.2, abs=1e-3) and w.std().item() == pytest.approx(0.05, rel=0.01)


@pytest.mark.parametrize("cfg, message", [
    (dict(hidden=[]), "model.hidden"),
    (dict(hidden=[10, 0]), "model.hidden"),
    (dict(dropout=1.0), "model.dropout"),
    (dict(weight_init_std=-0.1), "model.weight_init_std"),
])
def test_bad_config_names_the_option(cfg, message):
    with pytest.raises(ValueError, match=message):
        _mlp(**cfg)
