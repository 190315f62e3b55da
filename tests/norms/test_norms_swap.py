"""swap_norms on real models: exact site counts, and the swapped model still trains."""
import argparse

import pytest
import torch
from torch import nn

from normexp.norms import VARIANTS, RowNorm, build_norm, swap_norms, swap_norms_with
from normexp.norms.swap import FlattenLast
from normexp.norms.variants import NORM_TYPES
from normexp.cli.train import forget_fairseq_configs


def norm_sites(model):
    return [m for m in model.modules() if isinstance(m, (nn.LayerNorm, nn.RMSNorm))]


def train_step(model, loss_fn):
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    loss = loss_fn()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def encoder(norm_first=True, layers=3, d=32):
    layer = nn.TransformerEncoderLayer(d, 4, dim_feedforward=64, dropout=0.0, batch_first=True,
                                       norm_first=norm_first)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)


@pytest.mark.parametrize("name", VARIANTS)
def test_torch_transformer_encoder(name):
    torch.manual_seed(0)
    model = encoder()
    assert swap_norms(model, name) == 2 * 3 + 1  # norm1 + norm2 per layer, plus the final norm
    assert not norm_sites(model)
    assert sum(isinstance(m, NORM_TYPES) for m in model.modules()) == 7
    x = torch.randn(4, 6, 32)
    train_step(model, lambda: model(x).pow(2).mean())


def test_torch_fused_inference_path_is_not_used():
    """Eval + no_grad would run torch's fused encoder layer, which hard-codes LayerNorm."""
    torch.manual_seed(1)
    model = encoder(norm_first=False).eval()
    swap_norms(model, "rmsnorm", bias=False)
    x = torch.randn(2, 5, 32)
    with torch.no_grad():
        got = model(x)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            want = model(x)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    torch.testing.assert_close(got, want)


class LlamaRMSNorm(nn.Module):
    """Hugging Face style: weight only, eps as variance_epsilon."""

    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x):
        return self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)


def test_recognised_modules_device_dtype_and_sharing():
    shared = nn.LayerNorm(8)
    model = nn.Sequential(
        nn.Linear(8, 8), shared, nn.RMSNorm(8), LlamaRMSNorm(8), shared,
        nn.ModuleList([nn.LayerNorm(8, elementwise_affine=False)]),
        nn.LayerNorm([2, 4]),  # multi-dim normalized shape: flattened into one row
        nn.BatchNorm1d(8),  # channel batch norm is not a last-dim norm: left alone
    ).double()
    model.eval()
    assert swap_norms(model, "layernorm") == 6
    assert model[1] is model[4]
    assert isinstance(model[2], RowNorm) and isinstance(model[3], RowNorm)
    assert isinstance(model[7], nn.BatchNorm1d)
    assert model[2].weight.dtype == torch.float64 and not model[2].training
    assert model[5][0].weight.dtype == torch.float64  # the old one had no tensors: the model's dtype
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    torch.testing.assert_close(model[6](x), nn.functional.layer_norm(x, (2, 4)))
    # Swapping again replaces our own modules.
    assert swap_norms(model, "adanorm", k=0.2) == 6
    assert model[3].spec.k == 0.2


def test_swap_with_a_factory_builds_each_module_once_and_keeps_what_it_built():
    """A run's norm factory counts and keeps the modules it builds; they must be the very modules in the model."""
    built = []

    def factory(width):
        built.append((width, build_norm("rmsnorm", width)))
        return built[-1][1]

    shared = nn.LayerNorm(8)
    model = nn.Sequential(nn.Linear(8, 8), shared, shared, nn.LayerNorm([2, 4]), encoder(layers=2, d=8)).double()
    model.eval()
    assert swap_norms_with(model, factory) == 2 + 1 + 2 * 2 + 1
    assert [w for w, _ in built] == [8, 8, 8, 8, 8, 8, 8]  # the shared one once; (2, 4) flattened to 8
    assert model[1] is model[2] is built[0][1] and isinstance(model[3], FlattenLast) and model[3].norm is built[1][1]
    in_model = {id(m) for m in model.modules()}
    assert all(id(m) in in_model and m.weight.dtype == torch.float64 and not m.training for _, m in built)
    # torch's fused encoder inference path is kept off for factory-built norms too
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    with torch.no_grad():
        got = model[4](x)
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            want = model[4](x)
        finally:
            torch.backends.mha.set_fastpath_enabled(True)
    torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="use build_norm"):
        swap_norms_with(nn.RMSNorm(4), factory)


def test_swap_validates_before_touching_the_model():
    model = encoder(layers=1)
    with pytest.raises(ValueError, match="valid names"):
        swap_norms(model, "groupnorm")
    with pytest.raises(ValueError, match="C and k must be > 0"):
        swap_norms(model, "adanorm", k=-1.0)
    assert len(norm_sites(model)) == 3
    with pytest.raises(ValueError, match="use build_norm"):
        swap_norms(nn.LayerNorm(4), "rmsnorm")


def fairseq_iwslt_de_en():
    # Not skipped when fairseq is missing: CI installs it (pip install --no-deps ve-fairseq==0.12.3).
    from fairseq.data import Dictionary
    from fairseq.models.transformer import TransformerModel, transformer_iwslt_de_en

    vocab = Dictionary()
    for i in range(40):
        vocab.add_symbol(f"w{i}")
    # Like fairseq's own tests: build_model only needs the task's dictionaries.
    task = argparse.Namespace(source_dictionary=vocab, target_dictionary=vocab)
    # The AdaNorm paper's De-En setting (baseline-adanorm-km.sh): pre-norm, shared embeddings.
    args = argparse.Namespace(share_all_embeddings=True, encoder_normalize_before=True,
                              decoder_normalize_before=True, dropout=0.3)
    transformer_iwslt_de_en(args)
    model = TransformerModel.build_model(args, task)
    forget_fairseq_configs()  # importing fairseq fills Hydra's ConfigStore; later tests compose configs in this process
    return model, vocab


def test_fairseq_transformer_iwslt_de_en():
    torch.manual_seed(2)
    model, vocab = fairseq_iwslt_de_en()
    assert (model.encoder.embed_tokens.embedding_dim, len(model.encoder.layers), len(model.decoder.layers)) == (512, 6, 6)
    # Pre-norm 6+6: encoder layers have self_attn_layer_norm + final_layer_norm (12), the encoder
    # a final layer_norm (1); decoder layers self_attn/encoder_attn/final (18), the decoder a final
    # layer_norm (1).  32 in all; lancopku's code swaps only the 2 final ones (docs/papers.md §1.5).
    assert len(norm_sites(model)) == 32
    assert swap_norms(model, "adanorm", convention="official", C=2.0) == 32
    assert not norm_sites(model)
    fairseq_train_step(model, vocab)


def fairseq_train_step(model, vocab) -> None:
    """One training step of a fairseq translation model on random tokens (train_step's checks)."""
    src = torch.randint(vocab.nspecial, len(vocab), (2, 7))
    prev = torch.randint(vocab.nspecial, len(vocab), (2, 6))
    tgt = torch.randint(vocab.nspecial, len(vocab), (2, 6))

    def loss():
        logits, _ = model(src, torch.tensor([7, 7]), prev)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1))

    model.train()
    train_step(model, loss)


def test_build_norm_in_a_model_matches_swap():
    """A factory-built and a swapped module compute the same function."""
    torch.manual_seed(3)
    a = build_norm("detach_var", 16, convention="official")
    b = nn.Sequential(nn.LayerNorm(16))
    swap_norms(b, "detach_var", convention="official")
    x = torch.randn(3, 16)
    torch.testing.assert_close(a(x), b(x))
