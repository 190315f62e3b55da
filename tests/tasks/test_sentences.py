import tarfile

import pytest
import torch

from tests.conftest import only_record, run_cli
from normexp.tasks.sentences import data as sd
from normexp.tasks.files import DataError
from normexp.tasks.sentences.task import RtConfig, SentenceTask, Sst5Config, load_data


def test_rt_reader_on_the_real_files():
    examples = sd.read_rt()
    labels = torch.tensor([y for _, y in examples])
    assert len(examples) == 10662 and labels.bincount().tolist() == [5331, 5331]
    first = ("the rock is destined to be the 21st century's new \" conan \" and that he's going to make a splash even "
             "greater than arnold schwarzenegger , jean-claud van damme or steven segal .")
    assert examples[0] == (first.split(), 1)
    text = " ".join(t for tokens, _ in examples for t in tokens)
    # cp1252, not latin-1 or UTF-8: 0x85 is an ellipsis, 0x97 an em dash, 0xe9 an e-acute
    assert "…" in text and "—" in text and "é" in text
    assert "\x85" not in text and "\ufffd" not in text


def test_sst_reader_on_the_real_files():
    sizes = {"train": 8544, "valid": 1101, "test": 2210}
    counts = {"train": [1092, 2218, 1624, 2322, 1288], "valid": [139, 289, 229, 279, 165],
              "test": [279, 633, 389, 510, 399]}  # root labels, docs/data.md (SST)
    for split in sizes:
        examples = sd.read_sst(split)
        assert len(examples) == sizes[split]
        assert torch.tensor([y for _, y in examples]).bincount().tolist() == counts[split]
    first = sd.read_sst("train")[0]
    assert first[1] == 3 and first[0][:4] == ["The", "Rock", "is", "destined"] and first[0][-1] == "."
    phrases = sd.read_sst("train", phrases=True)
    assert len(phrases) > 10 * sizes["train"]
    assert len({tuple(t) for t, _ in phrases}) == len(phrases)  # distinct phrases
    assert (first[0], first[1]) in [(t, y) for t, y in phrases[:5]]  # sentences stay in, roots first


def test_tree_parser_takes_every_node_and_refuses_broken_trees():
    nodes = sd.parse_tree("(3 (2 a) (4 (1 b) (2 c)))")
    assert nodes[0] == (3, ["a", "b", "c"])
    assert sorted(map(tuple, ((y, tuple(t)) for y, t in nodes))) == sorted(
        [(3, ("a", "b", "c")), (2, ("a",)), (4, ("b", "c")), (1, ("b",)), (2, ("c",))])
    for broken in ("(3 (2 a) (4 b)", "(3 (2 a)))", "(7 a)", "(x a)"):
        with pytest.raises(DataError):
            sd.parse_tree(broken)


def test_rt_split_is_deterministic_disjoint_and_complete():
    fixed = sd.split_indices(10662, "fixed", seed=1)
    assert {k: len(v) for k, v in fixed.items()} == {"train": 8530, "valid": 1066, "test": 1066}
    assert set().union(*map(set, fixed.values())) == set(range(10662))
    assert sum(map(len, fixed.values())) == 10662  # so pairwise disjoint
    assert sd.split_indices(10662, "fixed", seed=1) == fixed
    assert sd.split_indices(10662, "fixed", seed=2)["test"] != fixed["test"]
    folds = [sd.split_indices(10662, "cv10", seed=1, fold=k) for k in range(10)]
    assert sorted(i for f in folds for i in f["test"]) == list(range(10662))  # the test folds partition the data
    for f in folds:
        assert not set(f["test"]) & set(f["valid"]) and not set(f["train"]) & (set(f["test"]) | set(f["valid"]))
    with pytest.raises(ValueError, match="task.split='random'"):
        sd.split_indices(10662, "random", seed=1)
    with pytest.raises(ValueError, match="task.fold=10"):
        sd.split_indices(10662, "cv10", seed=1, fold=10)


def test_vocabulary_from_train_only_and_cache_keyed_on_options(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMEXP_CACHE_DIR", str(tmp_path))
    data = load_data(RtConfig())
    vocab = set(data["vocab"])
    train_words = {t for tokens, _ in sd.read_rt() for t in tokens}
    assert len(vocab) - 2 < len(train_words)  # words seen only in valid/test are not in it
    splits = data["splits"]
    assert (splits["test"]["tokens"] == sd.UNK).any() and not (splits["train"]["tokens"] == sd.UNK).any()
    assert len(list(tmp_path.glob("sentences-rt-*.pt"))) == 1
    again = load_data(RtConfig())  # read back from the cache
    assert again["vocab"] == data["vocab"] and torch.equal(again["splits"]["test"]["tokens"], splits["test"]["tokens"])
    load_data(RtConfig(min_freq=2))
    load_data(RtConfig(split="cv10", fold=3))
    assert len(list(tmp_path.glob("sentences-rt-*.pt"))) == 3


def test_batches_depend_on_seed_and_epoch_only(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMEXP_CACHE_DIR", str(tmp_path))
    task = SentenceTask(Sst5Config(word_dropout=0.1), None, seed=1)
    first, again, other = (list(task.train_batches(e)) for e in (0, 0, 1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert not torch.equal(first[0][1], other[0][1])
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == sorted(task.splits["train"][1].tolist())
    assert any((b[0] == sd.UNK).any() for b in first)  # word dropout at work
    assert task.describe()["sizes"] == {"train": 8544, "valid": 1101, "test": 2210}


def test_rt_archive_member_is_verified(tmp_path):
    archive = tmp_path / "rt-polaritydata.tar.gz"
    good, bad = tmp_path / "good.pos", tmp_path / "bad.pos"
    good.write_bytes(sd.rt_file(1).read_bytes())
    bad.write_bytes(good.read_bytes()[:-10])
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(good, "rt-polaritydata/rt-polarity.pos")
        tar.add(bad, "rt-polaritydata/truncated.pos")
    member, spec = "rt-polaritydata/rt-polarity.pos", sd.RT_FILES[1]
    out = sd.extract_verified(archive, member, spec, tmp_path / "x" / "rt-polarity.pos")
    assert out.read_bytes() == good.read_bytes()
    with pytest.raises(DataError, match="wrong checksum"):
        sd.extract_verified(archive, "rt-polaritydata/truncated.pos", spec, tmp_path / "y" / "rt-polarity.pos")
    assert not (tmp_path / "y" / "rt-polarity.pos").exists() and not list((tmp_path / "y").glob("*.part"))
    with pytest.raises(DataError, match="no file"):
        sd.extract_verified(archive, "rt-polaritydata/missing.neg", sd.RT_FILES[0], tmp_path / "z" / "rt-polarity.neg")


@pytest.mark.parametrize("task,chance", [("rt", 50.0 + 8), ("sst5", 28.6 + 5)])
def test_tiny_run_learns(task, chance, tmp_path):
    """The real CLI, the tiny profile: test accuracy clears chance (RT: 50%; SST-5: the majority class, 28.6%)."""
    # one thread: on a shared 2-core machine, two spinning threads per run cost more than they give
    run_cli(f"experiment=tiny/{task}", f"out_root={tmp_path}", "trainer.progress=false", "trainer.threads=1")
    record = only_record(tmp_path)
    assert record["status"] == "completed" and record["task"] == task and record["profile"] == "tiny"
    assert record["test"]["accuracy"] > chance
    assert record["data"]["split"] and record["data"]["vocab_size"] > 1000
    if task == "rt":
        assert record["data"]["split_mode"] == "fixed" and record["data"]["split_seed"] == 1
    else:
        assert record["data"]["train_phrases"] is False
