"""Full-size MT training data: download (checksummed where a checksum is published) and fairseq's prepare recipes.

- ``iwslt14_deen``: ``prepare-iwslt14.sh``. The WIT3 archive URL in that script is dead; fairseq's own mirror
  (facebookresearch/fairseq#4361, joeynmt/joeynmt#140) serves the same ``de-en.tgz``. No checksum of the archive is
  published, so the recipe checks its *outputs*: the valid and test files it derives must hash to the published
  ones (docs/data.md), which pins archive, tokenizer and split together.
- ``iwslt15_envi``: the Stanford release is already tokenized; only ``train.{en,vi}`` are fetched (checksums from
  the HF datasets card ``mt_eng_vietnamese``).
- ``wmt14_ende``: ``prepare-wmt14en2de.sh`` on Europarl v7 + CommonCrawl + News Commentary v9, taken from the HF
  hub mirror of the statmt archives (zip, checksums from HF datasets' ``wmt14`` card).
"""
from __future__ import annotations

import hashlib
import logging
import tarfile
import zipfile
from pathlib import Path

from normexp.atomic import atomic_write_text
from normexp.tasks.files import DataError, FileSpec, data_roots, fetch
from normexp.tasks.translation.corpora import CORPORA, WMT14_BPE_DIR, read_bitext
from normexp.tasks.translation.text import Bpe, Moses, clean_corpus, iwslt_train_tags, learn_bpe, sgm_segments

log = logging.getLogger("normexp.mt_prepare")

IWSLT14_ARCHIVE = FileSpec(
    "iwslt14_deen/orig/de-en.tgz", urls=("http://dl.fbaipublicfiles.com/fairseq/data/iwslt14/de-en.tgz",),
    note="It is the IWSLT 2014 De-En release (WIT3 2014-01 texts/de/en/de-en.tgz).")
IWSLT14_TEST_SETS = ("IWSLT14.TED.dev2010", "IWSLT14.TEDX.dev2012", "IWSLT14.TED.tst2010", "IWSLT14.TED.tst2011",
                     "IWSLT14.TED.tst2012")  # concatenated in this order into test
# published outputs of prepare-iwslt14.sh (docs/data.md): the recipe must reproduce them
IWSLT14_TOKENIZED_SHA = {
    "test.de": "e718c783e33160b7d72af8f733756a466e0d0c016eff8ab624c1b0d1d01cbbdf",
    "test.en": "4b127beb9050511a3e6209cd837ff36f623a3a423666b32aba6e208b7330cf4c",
    "valid.de": "3f051579c9d8c7281a6ea8c72ad4ae09dbaa9bb24dfd41166f2c3a3df7cd940a",
    "valid.en": "e6d7317a9772cd1ed970910c611e9e7dada1f34439269b44a9d801334bff948d",
}
_HF = "https://huggingface.co/datasets/wmt/"
WMT14_ARCHIVES = {  # corpus -> (zip spec, member path pattern)
    "europarl-v7": (FileSpec("wmt14_ende/orig/training-parallel-europarl-v7.zip",
                             "5b2d8b32c2396da739b4e731871c597fcc6e75729becd74619d0712eecf7770e",
                             urls=(_HF + "wmt13/resolve/main-zip/training-parallel-europarl-v7.zip",)),
                    "training/europarl-v7.de-en.{lang}"),
    "commoncrawl": (FileSpec("wmt14_ende/orig/training-parallel-commoncrawl.zip",
                             "5ffe980072ea29adfd84568d099bea366d9f72772b988e670794ae851b4e5627",
                             urls=(_HF + "wmt13/resolve/main-zip/training-parallel-commoncrawl.zip",)),
                    "commoncrawl.de-en.{lang}"),
    "news-commentary-v9": (FileSpec("wmt14_ende/orig/training-parallel-nc-v9.zip",
                                    "ce199f93ec56ff480137ba29f0819f9a22e70d88be6d7458f112303d67d623d5",
                                    urls=(_HF + "wmt14/resolve/main-zip/training-parallel-nc-v9.zip",)),
                           "training/news-commentary-v9.de-en.{lang}"),
}


def _write(out: Path, relpath: str, lines: list[str]) -> Path:
    path = out / relpath
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    log.info("wrote %s (%d lines)", path, len(lines))
    return path


def _decode(raw: bytes) -> list[str]:
    lines = raw.decode("utf-8").split("\n")
    return lines[:-1] if lines and lines[-1] == "" else lines


def prepare_iwslt14(out: Path | None = None, workers: int = 1) -> Path:
    out = Path(out or data_roots()[-1])
    archive = fetch(IWSLT14_ARCHIVE)
    with tarfile.open(archive) as tar:
        def member(name: str) -> list[str]:
            try:
                return _decode(tar.extractfile(f"de-en/{name}").read())
            except KeyError:
                raise DataError(f"{archive} has no de-en/{name}: it is not the IWSLT14 De-En archive") from None

        tok = {lang: Moses(lang) for lang in ("de", "en")}
        train = {lang: tok[lang].map(iwslt_train_tags(member(f"train.tags.de-en.{lang}")), workers)
                 for lang in ("de", "en")}
        train["de"], train["en"] = clean_corpus(train["de"], train["en"], 1, 175, ratio=1.5)
        tests = {lang: [tok[lang](s).lower() for name in IWSLT14_TEST_SETS
                        for s in sgm_segments(member(f"{name}.de-en.{lang}.xml"))] for lang in ("de", "en")}
    splits = {"test": tests}
    for lang in ("de", "en"):  # lowercase.perl, then every 23rd line of the cleaned corpus is valid
        lines = [s.lower() for s in train[lang]]
        splits.setdefault("valid", {})[lang] = [s for i, s in enumerate(lines, 1) if i % 23 == 0]
        splits.setdefault("train", {})[lang] = [s for i, s in enumerate(lines, 1) if i % 23 != 0]
    for split, sides in splits.items():
        for lang, lines in sides.items():
            _write(out, f"iwslt14_deen/tokenized_lowercased/{split}.{lang}", lines)
    codes = learn_bpe(splits["train"]["de"] + splits["train"]["en"], 10000, workers)
    atomic_write_text(out / "iwslt14_deen/bpe10k/code", codes)
    bpe = Bpe(codes)
    for split, sides in splits.items():
        for lang, lines in sides.items():
            _write(out, f"iwslt14_deen/bpe10k/{split}.{lang}", bpe.map(lines))
    _check_published(out)
    return out / "iwslt14_deen/bpe10k"


def _check_published(out: Path) -> None:
    bad = []
    for name, want in IWSLT14_TOKENIZED_SHA.items():
        got = hashlib.sha256((out / f"iwslt14_deen/tokenized_lowercased/{name}").read_bytes()).hexdigest()
        if got != want:
            bad.append(name)
    if bad:
        raise DataError(
            f"the prepared IWSLT14 {', '.join(bad)} differ from fairseq's published prepare-iwslt14.sh output (the "
            "archive or the tokenizer differs). The training set was written; use the published valid/test "
            "files by setting NORMEXP_DATA_ROOT to a folder holding iwslt14_deen/bpe10k/{valid,test}.{de,en} "
            "(e.g. the test data root) and copying bpe10k/train.* there, or report the difference.")


def prepare_iwslt15(out: Path | None = None, workers: int = 1) -> Path:  # noqa: ARG001 - same signature as the others
    lines, paths = read_bitext("iwslt15_envi", "train")  # fetches (download + checksum) when missing
    log.info("IWSLT15 En-Vi train: %d pairs (%s)", len(lines["en"]), ", ".join(map(str, paths.values())))
    return paths["en"].parent


def prepare_wmt14(out: Path | None = None, workers: int = 1, merges: int = 40000) -> Path:
    out = Path(out or data_roots()[-1])
    tok = {lang: Moses(lang, aggressive=True, normalize=True) for lang in ("en", "de")}
    corpus = {"en": [], "de": []}
    for name, (spec, pattern) in WMT14_ARCHIVES.items():
        with zipfile.ZipFile(fetch(spec)) as z:
            sides = {lang: _decode(z.read(pattern.format(lang=lang))) for lang in ("en", "de")}
        if len(sides["en"]) != len(sides["de"]):
            raise DataError(f"{spec.relpath}: {name} sides differ ({len(sides['en'])} vs {len(sides['de'])} lines)")
        for lang in ("en", "de"):
            corpus[lang] += tok[lang].map(sides[lang], workers)
        log.info("%s: %d pairs", name, len(sides["en"]))
    splits = {"valid": {}, "train": {}}
    for lang, lines in corpus.items():  # every 100th line of the tokenized corpus is valid
        splits["valid"][lang] = [s for i, s in enumerate(lines, 1) if i % 100 == 0]
        splits["train"][lang] = [s for i, s in enumerate(lines, 1) if i % 100 != 0]
    del corpus
    codes = learn_bpe(splits["train"]["en"] + splits["train"]["de"], merges, workers)
    bpe_dir = WMT14_BPE_DIR if merges == 40000 else f"wmt14_ende/bpe{merges // 1000}k"
    atomic_write_text(out / bpe_dir / "code", codes)
    bpe = Bpe(codes)
    for split, sides in splits.items():  # BPE, then clean-corpus-n 1 250 -ratio 1.5 on the BPE'd text
        en, de = clean_corpus(bpe.map(sides["en"]), bpe.map(sides["de"]), 1, 250, ratio=1.5)
        _write(out, f"{bpe_dir}/{split}.en", en)
        _write(out, f"{bpe_dir}/{split}.de", de)
    return out / bpe_dir


RECIPES = {"iwslt14_deen": prepare_iwslt14, "iwslt15_envi": prepare_iwslt15, "wmt14_ende": prepare_wmt14}
assert set(RECIPES) == set(CORPORA)
