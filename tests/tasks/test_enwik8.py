"""enwik8 task: reader, Transformer-XL's split and byte vocabulary, batching with memory, bpc, and a real tiny run.

enwik8 itself is not on this machine: the reader is exercised on a generated file in the same XML form (with multi-byte
UTF-8 characters and newlines), and the enwik8 checks on deliberately wrong files.
"""
from __future__ import annotations

import hashlib
import math
import random
import zipfile
from pathlib import Path

import pytest
import torch

from normexp.models.transformer_xl import TransformerXLConfig
from normexp.norms import NormConfig, norm_factory
from normexp.tasks.enwik8 import data
from normexp.tasks.enwik8.task import Enwik8Config, Enwik8Task, SegmentBatches
from normexp.tasks.files import DataError
from tests.conftest import only_record, run_cli

WORDS = ("the of and in to a is was for on as by with from that at his an which were are first city — café Zürich "
         "naïve résumé München São Paulo Ωmega 東京 北京 français “quoted” 1906 2004 [[link]] {{cite}} &amp; &lt;ref&gt;")
TINY_MODEL = TransformerXLConfig(n_layer=2, d_model=32, n_head=2, d_head=16, d_inner=64, dropout=0.0, mem_len=16,
                                init_std=0.3)  # large enough that the memory visibly matters untrained


def write_wiki_xml(path: Path, n_bytes: int = 300_000, seed: int = 0) -> Path:
    """A Wikipedia-dump-like file: <page><title>…</title><text>…</text></page>, Zipf-distributed words, UTF-8."""
    rng, words = random.Random(seed), WORDS.split()
    weights = [1 / (rank + 1) for rank in range(len(words))]
    parts, size, page = ['<mediawiki xml:lang="en">\n'], 0, 0
    while size < n_bytes:
        lines = [" ".join(rng.choices(words, weights, k=rng.randint(5, 25))) + "." for _ in range(rng.randint(3, 12))]
        text = f"  <page>\n    <title>Page {page} {rng.choice(words)}</title>\n    <id>{page}</id>\n" \
               f"    <text xml:space=\"preserve\">{chr(10).join(lines)}</text>\n  </page>\n"
        parts.append(text)
        size += len(text.encode())
        page += 1
    path.write_text("".join(parts) + "</mediawiki>\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: on a small shared CPU, intra-op threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def wiki_file(tmp_path_factory) -> Path:
    return write_wiki_xml(tmp_path_factory.mktemp("wiki") / "wiki.xml")


def make_task(path: Path, **options) -> Enwik8Task:
    small = {"batch_size": 4, "tgt_len": 16, "eval_batch_size": 2, "eval_tgt_len": 32, "eval_mem_len": 48,
             "eval_clamp_len": 40}
    cfg = Enwik8Config(data_file=str(path), **{**small, **options})
    return Enwik8Task(cfg, TINY_MODEL, seed=1)


def test_split_is_prep_enwik8s_90_5_5_by_bytes():
    assert data.EVAL_BYTES * 20 == data.ENWIK8_BYTES == 100_000_000
    parts = data.split_bytes(bytes(range(100)), eval_bytes=5)
    assert parts == {"train": bytes(range(90)), "valid": bytes(range(90, 95)), "test": bytes(range(95, 100))}
    with pytest.raises(DataError, match="cannot be split"):
        data.split_bytes(b"abc", eval_bytes=2)


def test_reader_and_byte_vocabulary_on_a_wiki_xml_file(wiki_file):
    raw = wiki_file.read_bytes()
    task = make_task(wiki_file)
    eval_bytes = int(len(raw) * 0.05)
    assert task.split_bytes == {"train": len(raw) - 2 * eval_bytes, "valid": eval_bytes, "test": eval_bytes}
    parts = data.split_bytes(raw, eval_bytes)
    # byte level, newlines dropped (Transformer-XL): every other byte round-trips through the vocabulary
    assert ord("\n") not in task.vocab and len(set(task.vocab)) == len(task.vocab) == len(set(raw) - {10})
    for split, part in parts.items():
        assert data.decode(task.tokens[split], task.vocab) == part.replace(b"\n", b"")
    assert set("é東—".encode()) <= set(task.vocab)  # multi-byte characters are several byte tokens
    counts = {b: raw.count(bytes([b])) for b in task.vocab}
    assert [counts[b] for b in task.vocab] == sorted(counts.values(), reverse=True)  # most frequent first
    assert task.vocab[0] == ord(" ")
    record = task.describe()
    assert record["data"] == "data_file (not enwik8)" and record["file"] == str(wiki_file.resolve())
    assert record["sha256"] == hashlib.sha256(raw).hexdigest() and record["vocab_size"] == len(task.vocab)

    kept = make_task(wiki_file, drop_newlines=False)
    assert ord("\n") in kept.vocab and len(kept.tokens["train"]) == kept.split_bytes["train"]


def test_enwik8_files_are_verified(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMEXP_DATA_ROOT", str(tmp_path))
    monkeypatch.setenv("NORMEXP_DOWNLOAD_DIR", str(tmp_path / "downloads"))
    (tmp_path / "enwik8").mkdir()
    fake = write_wiki_xml(tmp_path / "enwik8" / "enwik8", n_bytes=2000)
    with pytest.raises(DataError, match=r"does not hold the original enwik8 .*expected 100000000 bytes"):
        Enwik8Task(Enwik8Config(), TINY_MODEL, seed=1)
    with zipfile.ZipFile(tmp_path / "enwik8" / "enwik8.zip", "w") as archive:
        archive.write(fake, "enwik8")
    fake.unlink()
    with pytest.raises(DataError, match=r"enwik8.zip has the wrong checksum .*expected 547994d9"):
        data.read_enwik8()


def test_segment_batches_continue_each_stream():
    tokens = torch.arange(203)
    batches = SegmentBatches(tokens, batch_size=4, tgt_len=7)  # 4 streams of 50 tokens
    pairs = list(batches)
    assert len(pairs) == len(batches) == 7 and pairs[-1][0].shape == (4, 49 - 6 * 7)
    inputs = torch.cat([x for x, _ in pairs], 1)
    targets = torch.cat([y for _, y in pairs], 1)
    assert torch.equal(inputs, tokens[:200].view(4, 50)[:, :49])  # row b: the b-th contiguous quarter, in order
    assert torch.equal(targets, inputs + 1)
    with pytest.raises(DataError, match="too few"):
        SegmentBatches(torch.arange(5), batch_size=4, tgt_len=7)


def test_memory_is_carried_between_batches_and_reset_each_epoch(wiki_file):
    task = make_task(wiki_file)
    torch.manual_seed(0)
    model = task.build_model(norm_factory(NormConfig(name="layernorm")))
    first, second = list(task.train_batches(0))[:2]
    task.start_epoch(0)
    _, units = task.loss(model, first)
    assert units == 4 * 16 and [m.shape for m in task.mems] == [(4, 16, 32)] * 2
    with_memory, _ = task.loss(model, second)
    task.start_epoch(1)
    assert task.mems is None
    without_memory, _ = task.loss(model, second)
    assert abs(with_memory.item() - without_memory.item()) > 1e-4


def test_bpc_is_loss_over_ln2(wiki_file):
    task = make_task(wiki_file)
    model = task.build_model(norm_factory(NormConfig(name="layernorm")))
    metrics = task.evaluate(model, "valid")
    assert metrics["bpc"] == pytest.approx(metrics["loss"] / math.log(2), rel=1e-12)
    with torch.no_grad():
        model.out.weight.zero_()  # tied: zero logits everywhere, a uniform prediction over the vocabulary
        model.out.bias.zero_()
    uniform = task.evaluate(model, "test")
    assert uniform["loss"] == pytest.approx(math.log(len(task.vocab)), rel=1e-6)
    assert uniform["bpc"] == pytest.approx(math.log2(len(task.vocab)), rel=1e-6)


def test_validation_takes_the_training_settings_on_a_slice_and_the_final_evaluation_the_eval_settings(wiki_file):
    task = make_task(wiki_file, valid_tokens=300)
    torch.manual_seed(1)
    model = task.build_model(norm_factory(NormConfig(name="layernorm"))).eval()
    quick, final = task.evaluate(model, "valid"), task.evaluate(model, "test")
    cfg = task.cfg
    assert quick == task._bpc(model, task.tokens["valid"][:300], cfg.eval_batch_size, cfg.tgt_len)
    with model.lengths(cfg.eval_mem_len, cfg.eval_clamp_len, cfg.eval_same_length):
        valid = task._bpc(model, task.tokens["valid"], cfg.eval_batch_size, cfg.eval_tgt_len)
        test = task._bpc(model, task.tokens["test"], cfg.eval_batch_size, cfg.eval_tgt_len)
    assert final == {**test, "valid_loss": valid["loss"], "valid_bpc": valid["bpc"]} and quick["bpc"] != valid["bpc"]


def test_bad_options_are_refused_with_the_fix(wiki_file, tmp_path):
    with pytest.raises(ValueError, match="task.batch_size=0"):
        make_task(wiki_file, batch_size=0)
    with pytest.raises(DataError, match="task.data_file=.*not found"):
        make_task(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="supports model=transformer_xl"):
        Enwik8Task(Enwik8Config(data_file=str(wiki_file)), TransformerXLConfig(name="cnn"), 1).build_model(
            norm_factory(NormConfig(name="layernorm")))


def test_tiny_training_through_the_cli_lowers_bpc(wiki_file, tmp_path):
    task = Enwik8Task(Enwik8Config(data_file=str(wiki_file), eval_batch_size=8, eval_tgt_len=32, eval_mem_len=128,
                                   eval_clamp_len=-1, eval_same_length=False),
                      TransformerXLConfig(n_layer=2, d_model=128, n_head=4, d_head=32, d_inner=512, mem_len=64), 1)
    torch.manual_seed(1)
    untrained = task.evaluate(task.build_model(norm_factory(NormConfig(name="layernorm"))).eval(), "valid")["bpc"]
    run_cli("experiment=tiny/enwik8", f"task.data_file={wiki_file}", "trainer.max_steps=90",
            "trainer.eval_every_steps=30", "trainer.threads=1", f"out_root={tmp_path}", "trainer.progress=false")
    record = only_record(tmp_path)
    assert record["status"] == "completed" and record["profile"] == "tiny"
    assert record["data"]["sha256"] == hashlib.sha256(wiki_file.read_bytes()).hexdigest()
    valid = [point["bpc"] for point in record["curves"]["valid"]]
    assert len(valid) == 3 and valid[-1] < valid[0] < untrained
    assert record["test"]["bpc"] < untrained - 2.0, (untrained, valid, record["test"])
