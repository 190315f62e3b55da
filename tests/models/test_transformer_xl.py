"""Transformer-XL: relative shift vs a direct computation, recurrence vs a whole-sequence pass, norm sites."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from normexp.models.transformer_xl import TransformerXL, TransformerXLConfig, attention_mask, rel_shift
from normexp.norms import NormConfig, norm_factory

SMALL = dict(n_layer=2, d_model=32, n_head=2, d_head=8, d_inner=64, dropout=0.0, init_std=0.2)


def small_model(norm: str = "layernorm", vocab: int = 50, **overrides) -> TransformerXL:
    torch.manual_seed(0)
    return TransformerXL(TransformerXLConfig(**{**SMALL, **overrides}), vocab, norm_factory(NormConfig(name=norm)))


@pytest.mark.parametrize("q_len, m_len", [(5, 0), (5, 4), (1, 7), (6, 11)])
def test_rel_shift_matches_direct_relative_scores(q_len, m_len):
    """After the shift, entry (i, j) must score query i against the embedding of its distance m+i-j to key j."""
    torch.manual_seed(0)
    k_len, d = q_len + m_len, 3
    queries, distances = torch.randn(2, q_len, d), torch.randn(k_len, d)  # distances[r]: embedding of distance r
    by_column = distances.flip(0)  # the model's position embeddings: farthest key first (distance K-1 ... 0)
    shifted = rel_shift(torch.einsum("bqd,kd->bqk", queries, by_column))
    for i in range(q_len):
        for j in range(m_len + i + 1):  # the causal part; the rest is masked in the model
            direct = queries[:, i] @ distances[m_len + i - j]
            torch.testing.assert_close(shifted[:, i, j], direct)


def test_attention_mask_is_causal_and_same_length_keeps_mem_len_keys():
    mask = attention_mask(4, 3, mem_len=3, same_length=False, device=torch.device("cpu"))
    assert (~mask).sum(1).tolist() == [4, 5, 6, 7]  # query i sees memory + itself + earlier queries
    same = attention_mask(4, 3, mem_len=3, same_length=True, device=torch.device("cpu"))
    assert (~same).sum(1).tolist() == [3, 3, 3, 3]
    assert same[0, -1] and not same[-1, -1]  # the newest key: only the last query sees it
    assert all(not same[i, 3 + i] for i in range(4))  # every query sees itself


@pytest.mark.parametrize("norm", ["layernorm", "adanorm", "none"])
def test_segments_with_covering_memory_give_the_whole_sequence_logits(norm):
    model = small_model(norm, mem_len=16).eval()
    tokens = torch.randint(0, 50, (3, 24))
    with torch.no_grad():
        whole, _ = model(tokens)
        mems, pieces = None, []
        for start in range(0, 24, 8):  # each segment's memory (16) holds all earlier tokens
            logits, mems = model(tokens[:, start : start + 8], mems)
            pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, 1), whole, rtol=1e-4, atol=1e-4)


def test_memory_shorter_than_the_context_changes_the_logits_and_has_mem_len_positions():
    model = small_model(mem_len=4).eval()
    tokens = torch.randint(0, 50, (2, 24))
    with torch.no_grad():
        whole, _ = model(tokens)
        mems, pieces = None, []
        for start in range(0, 24, 8):
            logits, mems = model(tokens[:, start : start + 8], mems)
            pieces.append(logits)
            assert len(mems) == 2 and all(m.shape == (2, 4, 32) and not m.requires_grad for m in mems)
    segmented = torch.cat(pieces, 1)
    torch.testing.assert_close(segmented[:, :8], whole[:, :8], rtol=1e-4, atol=1e-4)  # first segment: no memory
    assert (segmented[:, 8:] - whole[:, 8:]).abs().max() > 1e-2


def test_clamp_len_and_same_length_change_only_what_they_should():
    model = small_model(mem_len=16).eval()
    tokens = torch.randint(0, 50, (2, 8))
    with torch.no_grad():
        _, mems = model(tokens)
        _, mems = model(tokens, mems)  # 16 positions of memory
        base, _ = model(tokens, mems)
        with model.lengths(mem_len=16, clamp_len=100, same_length=False):  # beyond every distance: no effect
            torch.testing.assert_close(model(tokens, mems)[0], base)
        with model.lengths(mem_len=16, clamp_len=2, same_length=False):
            assert (model(tokens, mems)[0] - base).abs().max() > 1e-3
        with model.lengths(mem_len=16, clamp_len=-1, same_length=True):
            assert (model(tokens, mems)[0] - base).abs().max() > 1e-3
    assert (model.mem_len, model.clamp_len, model.same_length) == (16, -1, False)  # restored


@pytest.mark.parametrize("pre_lnorm", [False, True])
def test_every_norm_site_is_built_by_the_factory(pre_lnorm):
    built = []

    def counting_factory(dim: int) -> nn.Module:
        built.append(dim)
        return nn.LayerNorm(dim)

    model = TransformerXL(TransformerXLConfig(**{**SMALL, "pre_lnorm": pre_lnorm}), 50, counting_factory)
    assert built == [32] * 4  # after attention and after the feed-forward, in both layers
    assert sum(isinstance(m, nn.LayerNorm) for m in model.modules()) == 4
    logits, mems = model(torch.randint(0, 50, (2, 8)))
    logits.sum().backward()
    assert logits.shape == (2, 8, 50)
    assert all(m.weight.grad is not None for m in model.modules() if isinstance(m, nn.LayerNorm))


def test_output_is_tied_to_the_embedding_and_base_size_is_transformer_xl_base():
    model = small_model()
    assert model.out.weight is model.emb.weight
    base = TransformerXL(TransformerXLConfig(), 204, norm_factory(NormConfig(name="layernorm")))
    assert sum(p.numel() for p in base.parameters()) == 41_055_436  # Transformer-XL's 12L enwik8 model: 41M


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="d_model"):
        small_model(d_model=33)
    model = small_model(mem_len=0, same_length=True)
    with pytest.raises(ValueError, match="same_length"):
        model(torch.randint(0, 50, (1, 4)))


def test_norm_gains_drawn_as_upstream_when_asked():
    """kimiyoung/transformer-xl train.py draws LayerNorm weights from N(1, init_std); norm_gain_std does the same."""
    gains = lambda model: torch.cat([n.weight.detach() for layer in model.layers  # noqa: E731
                                     for n in (layer.attn.norm, layer.ff.norm)])
    assert torch.equal(gains(small_model()), torch.ones(2 * 2 * 32))
    drawn = gains(small_model(norm_gain_std=0.02))
    assert abs(drawn.mean().item() - 1) < 0.01 and 0.012 < drawn.std().item() < 0.03
    small_model("adanorm", norm_gain_std=0.02)  # a variant without a gain has nothing to draw
