"""The MT task on fairseq: norm sites, init, fairseq-train's batching, the presets, and a real run through the CLI."""
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from normexp.models.fairseq_transformer import (FairseqTransformerConfig, expected_norm_sites, fairseq_args,
                                                swap_fairseq_norms)
from normexp.norms import NormConfig, build_norm, norm_factory
from normexp.norms.variants import RowNorm
from normexp.tasks.translation import TranslationConfig, TranslationTask
from tests.conftest import only_record, run_cli

SMALL = dict(encoder_layers=2, decoder_layers=2, encoder_embed_dim=32, decoder_embed_dim=32,
             encoder_ffn_embed_dim=64, decoder_ffn_embed_dim=64, encoder_attention_heads=2, decoder_attention_heads=2)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    import os

    os.environ["NORMEXP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    cfg = TranslationConfig(train="valid[:400]", valid="valid[400:450]", test="test[:30]", max_tokens=512)
    return TranslationTask(cfg, FairseqTransformerConfig(share_all_embeddings=True, **SMALL), seed=3)


def _model(task, norm="adanorm", **model):
    task.model_cfg = FairseqTransformerConfig(share_all_embeddings=True, **{**SMALL, **model})
    return task.build_model(norm_factory(NormConfig(name=norm)))


@pytest.mark.parametrize("pre_norm,expected", [(False, 2 * 2 + 3 * 2), (True, 2 * 2 + 3 * 2 + 2)])
def test_every_fairseq_norm_site_comes_from_the_factory(task, pre_norm, expected):
    built = []

    def norm(dim):
        built.append(build_norm("layernorm_simple", dim))
        return built[-1]

    task.model_cfg = FairseqTransformerConfig(share_all_embeddings=True, encoder_normalize_before=pre_norm,
                                              decoder_normalize_before=pre_norm, **SMALL)
    model = task.build_model(norm)
    assert len(built) == expected == expected_norm_sites(fairseq_args(task.model_cfg))
    assert not any(isinstance(m, nn.LayerNorm) for m in model.modules())
    assert {id(m) for m in model.modules() if isinstance(m, RowNorm)} == {id(m) for m in built}
    assert any(model.decoder.layers[-1].encoder_attn_layer_norm is m for m in built)
    # the paper's 6+6 pre-norm De-En model: 12 + 18 + 2 final norms
    assert expected_norm_sites(fairseq_args(FairseqTransformerConfig(
        encoder_normalize_before=True, decoder_normalize_before=True))) == 32


def test_w_o_norm_and_km_init(task):
    model = _model(task, norm="none", init="km")
    assert not any(p.numel() and "norm" in n for n, p in model.named_parameters())
    layer = model.decoder.layers[1]
    for linear in (layer.fc1, layer.fc2, layer.self_attn.k_proj, layer.encoder_attn.out_proj):
        assert torch.all(linear.bias == 0) and linear.weight.abs().max() <= 1 / math.sqrt(linear.in_features)
    k_proj = _model(task, norm="none", init="fairseq").decoder.layers[1].self_attn.k_proj
    assert k_proj.weight.abs().max() > 1 / math.sqrt(k_proj.in_features)  # fairseq's Xavier (gain 1/√2) is wider
    with pytest.raises(ValueError, match="model.arch='nope'"):
        _model(task, arch="nope")


def test_batches_are_fairseq_trains_and_fixed_by_seed_and_epoch(task):
    first = [b["id"].tolist() for b in task.train_batches(0)]
    assert first == [b["id"].tolist() for b in task.train_batches(0)]
    assert first != [b["id"].tolist() for b in task.train_batches(1)]
    # the epoch is fairseq's frozen batches reshuffled; each pair at most once (fairseq 0.12.3's batch_by_size with
    # required_batch_size_multiple=8 leaves out the longest pair here, as fairseq-train does)
    assert sorted(tuple(sorted(ids)) for ids in first) == \
        sorted(tuple(sorted(int(i) for i in b)) for b in task._train_sampler())
    kept = [i for ids in first for i in ids]
    assert len(set(kept)) == len(kept) >= 399 and not task.dropped
    sample = next(iter(task.train_batches(0)))
    assert max(sample["net_input"]["src_tokens"].numel(), sample["target"].numel()) <= 512
    model = _model(task)
    loss, units = task.loss(model, sample)
    assert units == sample["ntokens"] == int(sample["target"].ne(1).sum())
    task.cfg.update_freq = 2
    try:
        groups = list(task.train_batches(0))
        assert [[b["id"].tolist() for b in g] for g in groups][0] == first[:2]
        loss2, units2 = task.loss(model, groups[0])
        assert units2 == sum(b["ntokens"] for b in groups[0]) and torch.isfinite(loss2)
    finally:
        task.cfg.update_freq = 1


def test_fairseq_norm_sites_are_counted_against_the_configuration(task):
    task.model_cfg = FairseqTransformerConfig(share_all_embeddings=True, **SMALL)
    model = task.build_model(norm_factory(NormConfig(name="layernorm")))  # our norms: swapped again, 10 of them
    pre_norm = fairseq_args(FairseqTransformerConfig(share_all_embeddings=True, encoder_normalize_before=True,
                                                     decoder_normalize_before=True, **SMALL))
    with pytest.raises(RuntimeError, match="replaced 10 norm modules .* implies 12"):
        swap_fairseq_norms(model, pre_norm, lambda width: build_norm("rmsnorm", width))


def test_evaluate_reports_both_bleus(task):
    model = _model(task).eval()
    task.cfg.max_len_b = 5
    metrics = task.evaluate(model, "test")
    assert {"loss", "nll_loss", "ppl", "bleu", "sacrebleu"} <= set(metrics)
    assert all(isinstance(v, float) and v >= 0 for v in metrics.values())
    hyps, refs = task.translate(model, "test")
    assert len(hyps) == len(refs) == 30
    # generate.py's T line: the reference decoded from the dictionary, unknown subwords escaped, then BPE removed
    d, line = task.dicts["en"], open(task.folder / "test.en").readline().split()
    assert refs[0] == " ".join(w if w in d.indices else "<<unk>>" for w in line).replace("@@ ", "")
    assert task.describe()["sacrebleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")


def test_presets_compose_and_the_de_en_one_is_the_verified_script(task):  # after fairseq's import (multirun)
    from normexp.config import register_configs
    from tests.conftest import REPO

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfgs = {f"{p}/{t}": compose("config", overrides=[f"experiment={p}/{t}"])
                for p in ("adanorm", "tiny") for t in ("iwslt14_deen", "iwslt15_envi", "wmt14_ende")}
    GlobalHydra.instance().clear()
    for name, cfg in cfgs.items():
        assert cfg.task.name == name.split("/")[1] and cfg.model.name == "fairseq_transformer"
        assert cfg.profile == ("tiny" if name.startswith("tiny") else "full")
    cfg = cfgs["adanorm/iwslt14_deen"]
    assert (cfg.task.max_tokens, cfg.task.update_freq, cfg.trainer.max_steps) == (4096, 2, 90000)
    assert cfg.optim.name == "adamw"
    assert (cfg.optim.lr, cfg.optim.warmup_steps, cfg.optim.warmup_init_lr, cfg.optim.weight_decay) == \
           (1.5e-3, 8000, 1e-7, 1e-4)
    assert (cfg.model.dropout, cfg.model.init, cfg.model.encoder_normalize_before) == (0.3, "km", True)
    assert cfgs["adanorm/wmt14_ende"].task.split_compounds and cfgs["adanorm/wmt14_ende"].trainer.average_last == 5


def test_tiny_run_through_the_cli(tmp_path):
    run_cli("experiment=tiny/iwslt14_deen", f"out_root={tmp_path}", f"hydra.run.dir={tmp_path}/tiny/run",
            "trainer.progress=false",
            "task.train='valid[:300]'", "task.valid='valid[300:340]'", "task.test='test[:12]'", "task.max_tokens=512",
            "task.max_len_b=4", "model.encoder_layers=1", "model.decoder_layers=1", "model.encoder_embed_dim=32",
            "model.decoder_embed_dim=32", "model.encoder_ffn_embed_dim=64", "model.decoder_ffn_embed_dim=64",
            "trainer.max_steps=6", "trainer.eval_every_steps=3", "trainer.average_last=2", "norm=adanorm",
            env={"NORMEXP_CACHE_DIR": str(tmp_path / "cache")}, timeout=600)
    record = only_record(tmp_path)
    assert record["status"] == "completed" and record["steps"] == 6 and record["profile"] == "tiny"
    assert {"bleu", "sacrebleu", "loss"} <= set(record["test"]) and 0 <= record["test"]["bleu"] <= 100
    assert record["data"]["sacrebleu"].startswith("nrefs:1") and record["data"]["sizes"]["test"] == 12
    assert record["extra"]["norm_sites"] == 2 + 3 + 2 and "average of the last 2" in record["extra"]["tested"]
    assert record["units_per_s"] > 0
    checkpoints = sorted((tmp_path / "tiny").rglob("*.pt"))
    assert checkpoints
    for path in checkpoints:  # torch's default weights_only=True loads every checkpoint we write
        state = torch.load(path, map_location="cpu")
        weights = state.get("model", state)
        assert any(k.startswith("encoder.layers.0.") for k in weights)
