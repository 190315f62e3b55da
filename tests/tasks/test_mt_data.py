"""MT data preparation on the real files of ../shared/data: readers, Moses/BPE steps, binarization, cache, recipes."""
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from normexp.tasks.files import DataError
from normexp.tasks.translation.corpora import read_bitext
from normexp.tasks.translation.data import DataOptions, binarize, parse_split, prepare
from normexp.tasks.translation.text import (Bpe, Moses, clean_corpus, detokenize, read_lines, read_sgm, remove_bpe)
from normexp.cli.train import forget_fairseq_configs

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NORMEXP_DATA_ROOT", REPO.parent / "shared" / "data"))


def test_stanford_test_sets_bom_and_missing_final_newline():
    en = read_lines(SHARED / "iwslt15_envi/tst2013.en")
    assert len(en) == 1268 and not en[0].startswith("\ufeff") and en[0].startswith("When I was little")
    assert len(read_lines(SHARED / "iwslt15_envi/tst2013.vi")) == 1268
    assert len(read_lines(SHARED / "iwslt15_envi/tst2012.en")) == 1553
    lines, _ = read_bitext("iwslt15_envi", "tst2013")
    assert len(lines["en"]) == len(lines["vi"]) == 1268


def test_newstest2014_sgml():
    en = read_sgm(SHARED / "wmt14_ende_test/newstest2014-deen-src.en.sgm")
    de = read_sgm(SHARED / "wmt14_ende_test/newstest2014-deen-ref.de.sgm")
    assert len(en) == len(de) == 3003
    assert en[0] == "Gutach: Increased safety for pedestrians"
    assert de[0] == "Gutach: Noch mehr Sicherheit für Fußgänger"
    assert not any("<seg" in s or "</seg>" in s for s in en + de)
    with pytest.raises(DataError, match="seg"):
        read_sgm(SHARED / "iwslt15_envi/tst2012.en")


@pytest.mark.parametrize("name", ["valid.de", "valid.en", "test.de", "test.en"])
def test_published_bpe_codes_reproduce_the_published_iwslt14_files(name):
    bpe = Bpe((SHARED / "iwslt14_deen/bpe10k/code").read_text(encoding="utf-8"))
    tokenized = read_lines(SHARED / f"iwslt14_deen/tokenized_lowercased/{name}")
    published = read_lines(SHARED / f"iwslt14_deen/bpe10k/{name}")
    assert bpe.map(tokenized) == published
    assert [remove_bpe(s) for s in published] == tokenized


def test_moses_steps_follow_the_perl_tools():
    en = Moses("en")
    assert en('He said "don\'t" & left.') == "He said &quot; don &apos;t &quot; &amp; left ."
    assert en("a well-known fact") == "a well-known fact"
    assert Moses("en", aggressive=True)("a well-known fact") == "a well @-@ known fact"
    assert Moses("de", lowercase=True)("Das Haus") == "das haus"
    assert detokenize(["He said &quot; don &apos;t &quot; &amp; left ."], "en") == ['He said "don\'t" & left.']


def test_clean_corpus_n():
    src = ["a b", "", "a " * 10, "x  y   z", "w"]
    tgt = ["c d", "e", "b", "u v w", "p q"]
    # drops: empty, ratio 10 > 1.5, ratio 2 > 1.5; squeezes whitespace
    assert clean_corpus(src, tgt, 1, 175, ratio=1.5) == (["a b", "x y z"], ["c d", "u v w"])
    assert clean_corpus(["a b c"], ["a b c"], 1, 2, ratio=9) == ([], [])


def test_split_specs():
    assert parse_split("valid[:6783]") == ("valid", slice(None, 6783))
    assert parse_split("newstest2014[2600:2800]") == ("newstest2014", slice(2600, 2800))
    assert parse_split("test") == ("test", slice(None, None))
    with pytest.raises(ValueError, match="slice"):
        parse_split("valid[1:2:3]")


def test_binarization_round_trip(tmp_path):
    from fairseq.data import Dictionary, data_utils

    lines = read_lines(SHARED / "iwslt14_deen/bpe10k/test.en")[:300]
    text = tmp_path / "t.en"
    text.write_text("".join(s + "\n" for s in lines), encoding="utf-8")
    d = Dictionary()
    Dictionary.add_file_to_dictionary(str(text), d, str.split, 1)
    d.finalize(padding_factor=8)
    tokens, unks = binarize(text, d, tmp_path / "t.de-en.en")
    data = data_utils.load_indexed_dataset(str(tmp_path / "t.de-en.en"), d, dataset_impl="mmap")
    assert len(data) == 300 and unks == 0 and tokens == sum(len(s.split()) + 1 for s in lines)
    assert [d.string(data[i][:-1]) for i in range(300)] == lines
    assert all(int(data[i][-1]) == d.eos() for i in range(300))
    forget_fairseq_configs()  # importing fairseq fills Hydra's ConfigStore; later CLI tests compose configs


def test_prepared_folder_is_cached_and_keyed(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMEXP_CACHE_DIR", str(tmp_path))
    opts = DataOptions(("tst2012[:300]", "tst2012[300:350]", "tst2013[:40]"), joined_dictionary=False)
    folder = prepare("iwslt15_envi", opts)
    assert prepare("iwslt15_envi", opts) == folder  # cache hit
    other = prepare("iwslt15_envi", DataOptions(("tst2012[:200]",) + opts.splits[1:], joined_dictionary=False))
    assert other != folder
    names = {p.name for p in folder.iterdir()}
    assert {"dict.en.txt", "dict.vi.txt", "train.en-vi.en.bin", "test.en-vi.vi.idx", "test.ref.vi"} <= names
    refs = read_lines(folder / "test.ref.vi")  # detokenized: &quot; un-escaped, punctuation attached
    assert len(refs) == 40 and "&quot;" not in " ".join(refs) and refs[0].endswith('."')
    with pytest.raises(ValueError, match="selects no sentences"):
        prepare("iwslt15_envi", DataOptions(("tst2012[5:5]",) + opts.splits[1:]))


def test_missing_training_set_names_the_preparation_step(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMEXP_DOWNLOAD_DIR", str(tmp_path / "dl"))
    with pytest.raises(DataError, match=r"iwslt14_deen/bpe10k/train.de.*prepare_mt.py iwslt14_deen"):
        prepare("iwslt14_deen", DataOptions(("train", "valid", "test")))


def test_prepare_cli_without_network_says_where_the_archive_goes(tmp_path):
    env = {**os.environ, "NORMEXP_DATA_ROOT": str(tmp_path / "empty"), "NORMEXP_DOWNLOAD_DIR": str(tmp_path / "dl")}
    proc = subprocess.run([sys.executable, "scripts/prepare_mt.py", "iwslt14_deen"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "iwslt14_deen/orig/de-en.tgz" in proc.stderr and str(tmp_path / "dl") in proc.stderr


def _xml(lang: str, lines: list[str]) -> bytes:
    segs = "".join(f'<seg id="{i}"> {s} </seg>\n' for i, s in enumerate(lines, 1))
    head = f'<mteval>\n<srcset setid="x" srclang="{lang}">\n<doc docid="1">\n'
    return (head + segs + "</doc>\n</srcset>\n</mteval>\n").encode()


def test_iwslt14_recipe_on_a_small_archive(tmp_path, monkeypatch):
    """prepare-iwslt14.sh's steps on a small archive in the WIT3 layout (sentences: detokenized published text)."""
    from normexp.tasks.translation import prepare as mt_prepare

    sents = {lang: detokenize(read_lines(SHARED / f"iwslt14_deen/tokenized_lowercased/valid.{lang}")[:230], lang)
             for lang in ("de", "en")}
    members = {}
    for lang in ("de", "en"):
        tags = ["<url>http://www.ted.com/talks/x</url>", "<keywords>k</keywords>", "<talkid>1</talkid>",
                "<title>A title</title>"] + sents[lang][:200]
        members[f"de-en/train.tags.de-en.{lang}"] = ("\n".join(tags) + "\n").encode()
        for k, name in enumerate(mt_prepare.IWSLT14_TEST_SETS):
            members[f"de-en/{name}.de-en.{lang}.xml"] = _xml(lang, sents[lang][200 + 6 * k: 206 + 6 * k])
    archive = tmp_path / "data" / "iwslt14_deen/orig/de-en.tgz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("NORMEXP_DATA_ROOT", str(tmp_path / "data"))
    out = tmp_path / "out"
    with pytest.raises(DataError, match="differ from fairseq's published"):  # not the real archive
        mt_prepare.prepare_iwslt14(out)
    train = read_lines(out / "iwslt14_deen/tokenized_lowercased/train.en")
    valid = read_lines(out / "iwslt14_deen/tokenized_lowercased/valid.en")
    test = read_lines(out / "iwslt14_deen/tokenized_lowercased/test.de")
    tok = {lang: [Moses(lang)(s) for s in ["A title"] + sents[lang][:200]] for lang in ("de", "en")}
    kept = [s.lower() for s in clean_corpus(tok["de"], tok["en"], 1, 175, ratio=1.5)[1]]
    assert len(kept) > 190 and kept[0] == "a title"  # the <title> line is kept as text, the tag lines dropped
    assert valid == kept[22::23] and train == [s for i, s in enumerate(kept, 1) if i % 23]
    assert len(test) == 30 and test[0] == Moses("de", lowercase=True)(sents["de"][200])
    code = (out / "iwslt14_deen/bpe10k/code").read_text()
    assert code.startswith("#version: 0.2") and len(code.splitlines()) > 100
    bpe = Bpe(code)
    assert read_lines(out / "iwslt14_deen/bpe10k/train.en") == bpe.map(train)
