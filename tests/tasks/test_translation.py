"""The MT task on fairseq: norm sites, init, fairseq-train's batching, --update-freq, the presets, and a real multirun
through the CLI."""
import copy
import itertools
import math
import os
import socket
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from normexp.engine import distributed
from normexp.cli.config import OptimConfig, TrainerConfig
from normexp.engine.loggers import ConsoleLogger
from normexp.models.fairseq_transformer import (FairseqTransformerConfig, expected_norm_sites, fairseq_args,
                                                swap_fairseq_norms)
from normexp.norms import NormConfig, build_norm, norm_factory
from normexp.norms.variants import RowNorm
from normexp.records import RunRecord
from normexp.tasks.translation.task import TranslationConfig, TranslationTask
from normexp.cli.train import forget_fairseq_configs
from normexp.engine.trainer import Trainer
from tests.conftest import records_under, run_cli

SMALL = dict(encoder_layers=2, decoder_layers=2, encoder_embed_dim=32, decoder_embed_dim=32,
             encoder_ffn_embed_dim=64, decoder_ffn_embed_dim=64, encoder_attention_heads=2, decoder_attention_heads=2)
NO_DROPOUT = dict(dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
DATA = dict(train="valid[:400]", valid="valid[400:450]", test="test[:30]", max_tokens=512)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    os.environ["NORMEXP_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))  # also the DDP ranks' (spawned) cache
    model = FairseqTransformerConfig(share_all_embeddings=True, **SMALL)
    yield TranslationTask(TranslationConfig(**DATA), model, seed=3)
    forget_fairseq_configs()  # as train.py does after each job: later tests compose our configs in this process


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
    assert units == sample["ntokens"] == int(sample["target"].ne(1).sum()) and torch.isfinite(loss)


def _sgd_trainer(task, model, run_dir, update_freq: int) -> Trainer:
    """A trainer whose update is minus the gradient (SGD, lr 1): its step shows the gradient it took."""
    record = RunRecord(task=task.cfg.name, model="fairseq_transformer", norm="layernorm", seed=3, name="t",
                       profile="tiny", config={})
    return Trainer(task, model, OptimConfig(name="sgd", lr=1.0, momentum=0.0),
                   TrainerConfig(update_freq=update_freq, max_epochs=1, progress=False), run_dir, record,
                   ConsoleLogger())


def _fairseq_update(task, model, groups) -> dict[str, torch.Tensor]:
    """The parameters after one SGD (lr 1) update as fairseq-train --update-freq takes it: per group (one per rank) the
    batches' summed criterion losses over their summed target tokens (sample_size). Several groups are averaged, as DDP
    averages the ranks' gradients (fairseq itself divides the ranks' summed gradients by their summed tokens)."""
    reference = copy.deepcopy(model)
    losses = [sum(task.criterion(reference, s)[0] for s in group) / sum(s["ntokens"] for s in group)
              for group in groups]
    (sum(losses) / len(groups)).backward()
    return {name: (p - p.grad).detach() for name, p in reference.named_parameters()}


def test_update_freq_is_one_update_from_the_summed_loss_of_consecutive_batches(task, tmp_path):
    torch.manual_seed(0)
    model = _model(task, norm="layernorm", **NO_DROPOUT)
    trainer = _sgd_trainer(task, model, tmp_path, update_freq=2)
    assert trainer.total_steps == math.ceil(len(list(task.train_batches(0))) / 2)
    group = list(itertools.islice(task.train_batches(0), 2))
    expected = _fairseq_update(task, model, [group])
    trainer.train_step(group)
    assert trainer.progress.units == sum(sample["ntokens"] for sample in group) and trainer.progress.batch == 2
    for name, after in model.named_parameters():
        torch.testing.assert_close(after.detach(), expected[name], rtol=1e-5, atol=1e-6, msg=name)


def _ddp_rank(rank: int, port: int, out: str) -> None:
    """One of two gloo ranks: one update_freq=2 update on its share (batches rank, rank + 2) of the first four."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    distributed.setup("cpu")
    try:
        task = TranslationTask(TranslationConfig(**DATA), FairseqTransformerConfig(), seed=3)
        torch.manual_seed(0)
        model = _model(task, norm="layernorm", **NO_DROPOUT)
        trainer = _sgd_trainer(task, model, Path(out) / f"rank{rank}", update_freq=2)
        trainer.train_step(list(distributed.shard(itertools.islice(task.train_batches(0), 4), 4)))
        torch.save(model.state_dict(), Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_ddp_ranks_accumulate_then_average(task, tmp_path):
    """Under DDP the criterion reaches the model's methods through the wrapper, the first batch's backward skips the
    all-reduce (no_sync) and the second's averages the accumulated gradients: both ranks take the same update."""
    torch.manual_seed(0)
    model = _model(task, norm="layernorm", **NO_DROPOUT)
    batches = list(itertools.islice(task.train_batches(0), 4))
    expected = _fairseq_update(task, model, [batches[0::2], batches[1::2]])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_ddp_rank, args=(port, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for name, want in expected.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], want, rtol=1e-5, atol=1e-6, msg=name)


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


def test_presets_compose_and_the_de_en_one_is_the_verified_script(task):  # after fairseq's import, as in a multirun
    from fairseq.dataclass.initialize import hydra_init
    from hydra.core.config_store import ConfigStore

    from normexp.cli.config import register_configs
    from tests.conftest import REPO

    # What `import fairseq` does the first time (an earlier test may have imported and forgotten it already).
    hydra_init()
    assert "config.yaml" in ConfigStore.instance().repo  # fairseq's primary config
    forget_fairseq_configs()  # what train.py does after every job
    assert "config.yaml" not in ConfigStore.instance().repo
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
    assert (cfg.task.max_tokens, cfg.trainer.update_freq, cfg.trainer.max_steps) == (4096, 2, 90000)
    assert cfg.optim.name == "adamw"
    assert (cfg.optim.lr, cfg.optim.warmup_steps, cfg.optim.warmup_init_lr, cfg.optim.weight_decay) == \
           (1.5e-3, 8000, 1e-7, 1e-4)
    assert (cfg.model.dropout, cfg.model.init, cfg.model.encoder_normalize_before) == (0.3, "km", True)
    assert cfgs["adanorm/wmt14_ende"].task.split_compounds and cfgs["adanorm/wmt14_ende"].trainer.average_last == 5


def test_tiny_multirun_through_the_cli(tmp_path):
    """Two jobs in one process: the second composes cleanly although the first imported fairseq; update_freq 1 and 2."""
    run_cli("-m", "experiment=tiny/iwslt14_deen", f"out_root={tmp_path}", f"hydra.sweep.dir={tmp_path}/tiny",
            "hydra.sweep.subdir=job${hydra:job.num}",  # the default names the folder after every override: too long
            "trainer.progress=false", "trainer.update_freq=1,2",
            "task.train='valid[:300]'", "task.valid='valid[300:340]'", "task.test='test[:12]'", "task.max_tokens=512",
            "task.max_len_b=4", "model.encoder_layers=1", "model.decoder_layers=1", "model.encoder_embed_dim=32",
            "model.decoder_embed_dim=32", "model.encoder_ffn_embed_dim=64", "model.decoder_ffn_embed_dim=64",
            "trainer.max_steps=6", "trainer.eval_every_steps=3", "trainer.average_last=2", "norm=adanorm",
            env={"NORMEXP_CACHE_DIR": str(tmp_path / "cache")}, timeout=600)
    records = records_under(tmp_path / "tiny")
    assert sorted(r["config"]["trainer"]["update_freq"] for r in records) == [1, 2]
    for record in records:
        assert record["status"] == "completed" and record["steps"] == 6 and record["profile"] == "tiny"
        assert {"bleu", "sacrebleu", "loss"} <= set(record["test"]) and 0 <= record["test"]["bleu"] <= 100
        assert record["data"]["sacrebleu"].startswith("nrefs:1") and record["data"]["sizes"]["test"] == 12
        assert record["extra"]["norm_sites"] == 2 + 3 + 2 and "average of the last 2" in record["extra"]["tested"]
        assert record["units_per_s"] > 0
    units = {r["config"]["trainer"]["update_freq"]: r["units_per_s"] * r["train_time_s"] for r in records}
    assert units[2] > 1.5 * units[1]  # six updates of two batches each saw about twice the target tokens
    checkpoints = sorted((tmp_path / "tiny").rglob("*.pt"))
    assert checkpoints
    for path in checkpoints:  # torch's default weights_only=True loads every checkpoint we write
        state = torch.load(path, map_location="cpu")
        weights = state.get("model", state)
        assert any(k.startswith("encoder.layers.0.") for k in weights)
