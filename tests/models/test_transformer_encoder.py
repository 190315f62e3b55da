import pytest
import torch
from torch import nn

from normexp.models.transformer_encoder import TransformerClassifier, TransformerEncoderConfig
from normexp.norms import NormConfig, norm_factory


class Recorded(nn.Module):
    """A norm site: records that it was built through the factory and that data passed through it."""

    def __init__(self, dim: int, log: list):
        super().__init__()
        self.dim, self.log, self.calls = dim, log, 0
        log.append(self)

    def forward(self, x):
        assert x.shape[-1] == self.dim
        self.calls += 1
        return x - x.mean(-1, keepdim=True)


@pytest.fixture(autouse=True)
def one_thread():
    """On the shared 2-core machine two spinning intra-op threads make these tiny steps 10-30x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tokens(batch=3, length=7, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(2, vocab, (batch, length), generator=g)


@pytest.mark.parametrize("pre_norm", [False, True])
def test_every_norm_site_comes_from_the_factory(pre_norm):
    log = []
    cfg = TransformerEncoderConfig(layers=4, d_model=16, heads=2, d_ff=32, pre_norm=pre_norm)
    model = TransformerClassifier(cfg, lambda d: Recorded(d, log), vocab_size=50, num_classes=5)
    assert len(log) == 2 * 4 + (1 if pre_norm else 0)  # two per layer, plus the final norm of pre-norm
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules()), "a norm site bypassed the factory"
    assert model(tokens()).shape == (3, 5)
    assert all(site.calls == 1 for site in log)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_padding_changes_nothing(pooling):
    cfg = TransformerEncoderConfig(layers=2, d_model=16, heads=4, d_ff=32, pooling=pooling)
    model = TransformerClassifier(cfg, norm_factory(NormConfig(name="layernorm")), vocab_size=50, num_classes=2).eval()
    x = tokens(length=5)
    padded = torch.cat([x, torch.zeros(3, 4, dtype=torch.long)], dim=1)  # pad id 0
    torch.testing.assert_close(model(x), model(padded))
    shorter = padded.clone()
    shorter[0, 3:] = 0  # a real change in one sentence changes its logits only
    out = model(shorter)
    assert not torch.allclose(out[0], model(x)[0]) and torch.allclose(out[1:], model(x)[1:])


@pytest.mark.parametrize("variant", ["layernorm", "layernorm_simple", "adanorm", "detachnorm", "none"])
def test_trains_with_every_variant_of_the_sweep(variant):
    torch.manual_seed(0)
    cfg = TransformerEncoderConfig(layers=4, d_model=32, heads=4, d_ff=64, dropout=0.0, attention_dropout=0.0)
    model = TransformerClassifier(cfg, norm_factory(NormConfig(name=variant)), vocab_size=20, num_classes=2)
    x = tokens(batch=16, length=6, vocab=20, seed=1)
    y = (x == 5).any(1).long()  # a learnable rule on the tokens
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(40):
        loss = nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    used = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert "embed.weight" in used and "classifier.weight" in used and any(".ff." in n for n in used)


def test_bad_options_say_what_to_change():
    norm = norm_factory(NormConfig(name="layernorm"))
    with pytest.raises(ValueError, match="model.pooling='sum'"):
        TransformerClassifier(TransformerEncoderConfig(pooling="sum"), norm, 10, 2)
    with pytest.raises(ValueError, match="d_model=30 must be divisible by model.heads=4"):
        TransformerClassifier(TransformerEncoderConfig(d_model=30, heads=4), norm, 10, 2)
    model = TransformerClassifier(TransformerEncoderConfig(d_model=8, heads=2, max_positions=4), norm, 10, 2)
    with pytest.raises(ValueError, match="max_positions=4"):
        model(tokens(length=6, vocab=10))
