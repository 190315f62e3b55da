"""The parser MLP: shapes, every norm site built by the factory, feature groups, options."""
import pytest
import torch
from torch import nn

from normexp.models.parser_mlp import ParserMLP, ParserMLPConfig
from normexp.norms import VARIANTS, NormConfig, norm_factory

VOCAB, FEATURES = (100, 20, 5), (18, 18, 12)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matrices on a shared CPU: extra intra-op threads only add contention (a step went 10x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def features(batch=7, groups=FEATURES, vocab=VOCAB):
    return torch.cat([torch.randint(0, v, (batch, f)) for v, f in zip(vocab, groups)], dim=1)


def test_every_norm_site_comes_from_the_factory():
    built = []

    def factory(dim):
        built.append(dim)
        return nn.Identity()

    model = ParserMLP(ParserMLPConfig(hidden=32, layers=3), factory, VOCAB, FEATURES, n_classes=9)
    assert built == [32, 32, 32]
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert model(features()).shape == (7, 9)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if v != "batchnorm"])
def test_trains_with_every_row_wise_variant(variant):
    torch.manual_seed(0)
    model = ParserMLP(ParserMLPConfig(hidden=16, dropout=0.0), norm_factory(NormConfig(name=variant)),
                      VOCAB, FEATURES, n_classes=3)
    x, y = features(64), torch.randint(0, 3, (64,))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first, variant  # it can fit 64 random examples
    assert all(p.grad is not None for p in model.parameters())


def test_unlabeled_treebank_has_no_label_table():
    model = ParserMLP(ParserMLPConfig(hidden=8), lambda d: nn.Identity(), VOCAB, (18, 18, 0), n_classes=3)
    assert len(model.embeddings) == 2 and model.linears[0].in_features == 36 * 50
    assert model(features(groups=(18, 18, 0))).shape == (7, 3)


def test_one_hidden_cube_layer_is_chen_and_manning():
    model = ParserMLP(ParserMLPConfig(layers=1, activation="cube"), lambda d: nn.Identity(), VOCAB, FEATURES, 3)
    assert len(model.linears) == 1 and model.linears[0].out_features == 200
    x = torch.tensor([-2.0, 0.5, 3.0])
    assert torch.equal(model.activation(x), x ** 3)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="model.activation='gelu' is not valid"):
        ParserMLP(ParserMLPConfig(activation="gelu"), lambda d: nn.Identity(), VOCAB, FEATURES, 3)
    with pytest.raises(ValueError, match="model.layers=0 must be at least 1"):
        ParserMLP(ParserMLPConfig(layers=0), lambda d: nn.Identity(), VOCAB, FEATURES, 3)
