"""PTB dependency parsing: the reader (sample zip, CoNLL-X, CoNLL-U), the arc-standard oracle, the scorer, the task,
and a short real training run through the CLI that must beat trivial attachment baselines."""
import shutil

import pytest

from normexp.tasks.parsing.arc_standard import PUNCT_TAGS, Configuration, attachment_scores, oracle_transitions
from normexp.tasks.parsing.trees import (SAMPLE, DataError, file_range, is_projective, parse_lines, read_sample,
                                            sample_splits)
from normexp.tasks.files import fetch
from normexp.tasks.parsing.task import ParsingConfig, ParsingTask
from tests.conftest import only_record, run_cli


@pytest.fixture(scope="module")
def sample():
    return read_sample(fetch(SAMPLE))


def replay(transitions, n, n_labels=1):
    c = Configuration(n)
    for t in transitions:
        assert any(c.legal()), "a transition was asked of a terminal configuration"
        c.apply(t, n_labels)
    assert c.terminal()
    return c


def test_sample_reader_counts(sample):
    """The README's verified counts: 199 files, 3914 sentences, 94084 tokens; heads are inside their sentence."""
    sentences = [s for file in sample.values() for s in file]
    assert sorted(sample) == list(range(1, 200))
    assert (len(sentences), sum(map(len, sentences))) == (3914, 94084)
    assert all(s.labels is None and all(0 <= h <= len(s) for h in s.heads) for s in sentences)
    # the pound sign is a token ("#", tag #), not a CoNLL-U comment
    assert sum(t == "#" for s in sentences for t in s.tags) == 16


def test_oracle_rebuilds_every_projective_gold_tree_of_the_sample(sample):
    sentences = [s for file in sample.values() for s in file]
    projective = [s for s in sentences if is_projective(s.heads)]
    assert len(projective) == 3914  # the sample (Penn2Malt-style head rules) holds no crossing arc
    for s in projective:
        transitions = oracle_transitions(s.heads)
        assert len(transitions) == 2 * len(s)
        assert replay(transitions, len(s)).heads[1:] == s.heads


def test_oracle_with_labels_and_its_limits():
    heads, labels = [2, 0, 2, 3], [0, 1, 2, 0]  # "She ate fish quickly"-like, labels by id
    c = replay(oracle_transitions(heads, labels, n_labels=3), 4, n_labels=3)
    assert (c.heads[1:], c.labels[1:]) == (heads, labels)
    crossing = [3, 0, 2, 2]  # arcs 1←3 and 2→4 cross
    assert not is_projective(crossing) and is_projective(heads)
    with pytest.raises(ValueError, match="not projective"):
        oracle_transitions(crossing)
    with pytest.raises(ValueError, match="several root"):
        oracle_transitions([0, 0])


def test_gold_against_gold_is_100_and_punctuation_is_excluded(sample):
    sentences = [s for n in file_range("0180-0199") for s in sample[n]]
    tags, heads = [s.tags for s in sentences], [s.heads for s in sentences]
    assert attachment_scores(tags, heads, heads) == {"uas": 100.0}
    labels = [["x"] * len(s) for s in sentences]
    assert attachment_scores(tags, heads, heads, labels, labels) == {"uas": 100.0, "las": 100.0}
    # Chen & Manning's tag set: `` '' , . : are skipped; -LRB- -RRB- # $ are scored
    assert set(PUNCT_TAGS) == {"``", "''", ",", ".", ":"}
    sent_tags = [["NNP", "VBD", ",", "-LRB-", "NN", "-RRB-", "."]]
    gold = [[2, 0, 2, 5, 2, 5, 2]]
    wrong_punct = [[2, 0, 1, 5, 2, 5, 1]]  # only the comma and the period are wrong
    assert attachment_scores(sent_tags, gold, wrong_punct) == {"uas": 100.0}
    wrong_bracket = [[2, 0, 2, 2, 2, 5, 2]]  # -LRB- is wrong: 4 of 5 scored tokens right
    assert attachment_scores(sent_tags, gold, wrong_bracket)["uas"] == pytest.approx(80.0)


def test_one_reader_for_dp_conllx_conllu():
    dp = ["The\tDT\t2", "dog\tNN\t3", "barks\tVBZ\t0", ".\t.\t3"]
    conllx = ["1\tThe\tthe\tDT\tDT\t_\t2\tdet\t_\t_", "2\tdog\tdog\tNN\tNN\t_\t3\tnsubj\t_\t_",
              "3\tbarks\tbark\tVB\tVBZ\t_\t0\troot\t_\t_", "4\t.\t.\t.\t.\t_\t3\tpunct\t_\t_"]
    conllu = ["# sent_id = 1", "# text = The dog barks.", "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_",
              "2\tdog\tdog\tNOUN\t_\t_\t3\tnsubj\t_\t_", "3-4\tbarks.\t_\t_\t_\t_\t_\t_\t_\t_",
              "3\tbarks\tbark\tVERB\tVBZ\t_\t0\troot\t_\t_", "3.1\tx\tx\tX\tX\t_\t_\t_\t_\t_",
              "4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_"]
    (a,), (b,), (c,) = (parse_lines(lines + [""], "test") for lines in (dp, conllx, conllu))
    assert a.words == b.words == c.words == ["The", "dog", "barks", "."]
    assert a.heads == b.heads == c.heads == [2, 3, 0, 3]
    assert (a.labels, b.labels) == (None, ["det", "nsubj", "root", "punct"])
    assert c.tags == ["DT", "NOUN", "VBZ", "."]  # XPOS, or UPOS where XPOS is "_"
    with pytest.raises(DataError, match="test:1: 5 tab-separated columns"):
        parse_lines(["a\tb\tc\td\te"], "test")
    with pytest.raises(DataError, match="points past"):
        parse_lines(["a\tDT\t5"], "test")


def test_conll_source_with_labels(tmp_path):
    """source=conll reads CoNLL files (here: sample files re-labelled by the head's tag) and reports LAS."""
    from normexp.models.parser_mlp import ParserMLPConfig
    from normexp.norms import NormConfig, norm_factory

    splits, _ = sample_splits({"train": "0001-0008", "valid": "0009-0010", "test": "0011-0012"})
    for split, sentences in splits.items():
        lines = []
        for s in sentences:
            for i, (w, t, h) in enumerate(zip(s.words, s.tags, s.heads), 1):
                lines.append(f"{i}\t{w}\t_\t{t}\t{t}\t_\t{h}\t{'root' if h == 0 else s.tags[h - 1]}\t_\t_")
            lines.append("")
        (tmp_path / f"{split}.conllx").write_text("\n".join(lines) + "\n")
    cfg = ParsingConfig(source="conll", train_file=str(tmp_path / "train.conllx"), dev_file="valid.conllx",
                        test_file="test.conllx")
    with pytest.raises(DataError, match="task.dev_file='valid.conllx' not found"):
        ParsingTask(cfg, ParserMLPConfig(), seed=1)
    cfg.dev_file, cfg.test_file = str(tmp_path / "valid.conllx"), str(tmp_path / "test.conllx")
    task = ParsingTask(cfg, ParserMLPConfig(), seed=1)
    assert task.labeled and task.describe()["vocab"]["labels"] == len(task.labels) > 10
    features, gold = task.examples["train"]
    assert features.shape[1] == 18 + 18 + 12 and int(gold.max()) < 1 + 2 * len(task.labels)
    model = task.build_model(norm_factory(NormConfig(name="layernorm")))
    metrics = task.evaluate(model.eval(), "valid")
    assert set(metrics) == {"loss", "uas", "las"} and 0 <= metrics["las"] <= metrics["uas"] <= 100


def test_bad_data_and_options(tmp_path, monkeypatch):
    from normexp.models.parser_mlp import ParserMLPConfig

    (tmp_path / "ptb_dep_sample").mkdir()
    shutil.copy(fetch(SAMPLE), tmp_path / "ptb_dep_sample" / "dependency_treebank.zip")
    with open(tmp_path / "ptb_dep_sample" / "dependency_treebank.zip", "r+b") as f:
        f.truncate(100_000)
    monkeypatch.setenv("NORMEXP_DATA_ROOT", str(tmp_path))
    with pytest.raises(DataError, match="dependency_treebank.zip has the wrong checksum"):
        ParsingTask(ParsingConfig(), ParserMLPConfig(), seed=1)
    monkeypatch.undo()
    with pytest.raises(DataError, match="task.source=conll needs task.train_file"):
        ParsingTask(ParsingConfig(source="conll"), ParserMLPConfig(), seed=1)
    with pytest.raises(ValueError, match="task.source='ctb' is not valid"):
        ParsingTask(ParsingConfig(source="ctb"), ParserMLPConfig(), seed=1)
    with pytest.raises(ValueError, match="overlaps"):
        ParsingTask(ParsingConfig(sample_dev="0150-0179"), ParserMLPConfig(), seed=1)
    with pytest.raises(ValueError, match="not valid: write first-last"):
        file_range("0179-0160")


def test_tiny_run_beats_trivial_baselines(tmp_path, sample):
    """experiment=tiny/ptb through the real CLI learns: its test UAS clears attaching every word to a neighbour."""
    test = [s for n in file_range("0180-0199") for s in sample[n]]
    tags, gold = [s.tags for s in test], [s.heads for s in test]
    to_next = [[i + 2 if i + 1 < len(h) else 0 for i in range(len(h))] for h in gold]
    to_previous = [list(range(len(h))) for h in gold]  # token 1 → ROOT, token i → i - 1
    baseline = max(attachment_scores(tags, gold, pred)["uas"] for pred in (to_next, to_previous))
    run_cli("experiment=tiny/ptb", f"out_root={tmp_path}", "trainer.progress=false")
    record = only_record(tmp_path)
    assert record["status"] == "completed" and record["task"] == "ptb" and record["profile"] == "tiny"
    assert record["data"]["non_projective"] == {"train": 0, "valid": 0, "test": 0}
    assert record["data"]["sentences"]["test"] == len(test)
    assert set(record["test"]) == {"loss", "uas"}
    assert record["test"]["uas"] > baseline + 20, (record["test"], baseline)
