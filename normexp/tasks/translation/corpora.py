"""Where each MT corpus lives, what its files must hash to, and how it is read (docs/data.md).

A corpus is either *processed* (tokenized and, for IWSLT14/WMT14, BPE'd: used as is) or *raw* (sentences as
published, e.g. newstest2014's SGML: the task tokenizes it with the Moses settings given here, and the raw target
side is the sacreBLEU reference). Processed training sets come from ``scripts/prepare_mt.py`` (see ``mt_prepare``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from normexp.tasks.files import DataError, FileSpec, data_roots, fetch
from normexp.tasks.translation.text import read_lines, read_sgm

LANGS = {"iwslt14_deen": ("de", "en"), "iwslt15_envi": ("en", "vi"), "wmt14_ende": ("en", "de")}
STANFORD = "https://nlp.stanford.edu/projects/nmt/data/iwslt15.en-vi/"
WMT14_BPE_DIR = "wmt14_ende/bpe40k"  # prepare-wmt14en2de.sh: BPE_TOKENS=40000


def _prepare_note(task: str) -> str:
    return f"It is produced by `python scripts/prepare_mt.py {task}` (see the README's MT section)."


@dataclass(frozen=True)
class Corpus:
    #: lang -> candidate files; the first one present under a data root is used, else the last one is downloaded
    files: dict[str, tuple[FileSpec, ...]]
    fmt: str = "text"  # text: one sentence a line | sgml: <seg> elements
    processed: bool = True
    aggressive: bool = False  # Moses -a (hyphen splitting), for raw corpora
    lowercase: bool = False


def _iwslt14(split: str, de: str | None = None, en: str | None = None) -> Corpus:
    note = _prepare_note("iwslt14_deen") + " The published valid/test files are in the test data root's iwslt14_deen/."
    return Corpus({lang: (FileSpec(f"iwslt14_deen/bpe10k/{split}.{lang}", sha256=sha, note=note),)
                   for lang, sha in (("de", de), ("en", en))})


def _stanford(name: str, en: str, vi: str, shared: dict[str, str] | None = None) -> Corpus:
    files = {}
    for lang, sha in (("en", en), ("vi", vi)):
        download = FileSpec(f"iwslt15_envi/{name}.{lang}", sha256=sha, urls=(STANFORD + f"{name}.{lang}",))
        if shared:  # the test data root holds a re-encoded copy (BOM added): accept it, or download the original
            specs = (FileSpec(f"iwslt15_envi/{name}.{lang}", sha256=shared[lang]),
                     FileSpec(f"iwslt15_envi/stanford/{name}.{lang}", sha256=sha, urls=download.urls))
        else:
            specs = (download,)
        files[lang] = specs
    return Corpus(files)


def _wmt14_prepared(split: str) -> Corpus:
    note = _prepare_note("wmt14_ende")
    return Corpus({lang: (FileSpec(f"{WMT14_BPE_DIR}/{split}.{lang}", note=note),) for lang in ("en", "de")})


_NT14 = "wmt14_ende_test/newstest2014-deen-"
_JIANT = "https://raw.githubusercontent.com/nyu-mll/jiant/ad60d996ed865e59969ca71fe156d4a728e0a0ab/test-full/"
CORPORA: dict[str, dict[str, Corpus]] = {
    "iwslt14_deen": {
        "train": _iwslt14("train"),
        "valid": _iwslt14("valid", "27660c689b99b54f0f858775527ff351c520f7581be90aac84b6d16f14624c9e",
                          "1b1f2246625cc907fbd9c8195776434b24687c3fc4e068c6f3d3ec542846823f"),
        "test": _iwslt14("test", "0bca28e500495a4a9694ae134b0ae35526a280cb0966abbcf3c9af3edc3dfe10",
                         "c2951533a0b03557599978ea1726c440bdbb8210454d1e9ef3b87c2b6228ac43"),
    },
    "iwslt15_envi": {  # checksums of the Stanford originals: HF datasets' mt_eng_vietnamese/dataset_infos.json
        "train": _stanford("train", "c26dfeed74b6bf3752f5ca552f2412456f0de153f7c804df8717931fb3a5c78a",
                           "707206edf2dc0280273952c7b70544ea8a1363aa69aaeb9d70514b888dc3067d"),
        "tst2012": _stanford("tst2012", "b8fbcd0d4199d41276421d1f7228298df67dd9e2c5c134c2ee8cdf3ec27801e2",
                             "01004078b3f36b0c46e81b65fc6851230b3c823405c76d1d82ef3b786b512ff0"),
        "tst2013": _stanford("tst2013", "3860ce60bc5b85d96cc2d3d580cf1bc9d62440e939c1b964676d3607c4e8f1df",
                             "29af16842808da2812b8fd4d47fc05d082ba870e60ab7755090ad04b380994cd",
                             shared={"en": "8643c5a45e1759d80e3f85299bb9b0bb4753384f1d35fab77a0881228c548c71",
                                     "vi": "1c07540cf68ac0127f98f53b84c239cd6cf5f7d7b29adb43e5b81d27e06c32e3"}),
    },
    "wmt14_ende": {
        "train": _wmt14_prepared("train"),
        "valid": _wmt14_prepared("valid"),
        # fairseq's prepare-wmt14en2de.sh: English from src.en, German from ref.de, tokenizer.perl -a, no normalization
        "newstest2014": Corpus(
            {"en": (FileSpec(_NT14 + "src.en.sgm", "504d07744c489d23aefbd120bebf9720fadcb32891d4370f4fe05732de274099",
                             urls=(_JIANT + "newstest2014-deen-src.en.sgm",)),),
             "de": (FileSpec(_NT14 + "ref.de.sgm", "f10c95d057be397c0718b3c349840709810f4e39deed6906f7beace67af6ea3b",
                             urls=(_JIANT + "newstest2014-deen-ref.de.sgm",)),)},
            fmt="sgml", processed=False, aggressive=True),
    },
}


def corpus(task: str, name: str) -> Corpus:
    if task not in CORPORA:
        raise ValueError(f"unknown translation task {task!r}: choose one of {sorted(CORPORA)}")
    if name not in CORPORA[task]:
        raise ValueError(f"task {task} has no corpus {name!r}: choose one of {sorted(CORPORA[task])}")
    return CORPORA[task][name]


def locate(specs: tuple[FileSpec, ...]) -> tuple[Path, FileSpec]:
    """The first candidate present under a data root (verified), else the last one fetched (downloaded)."""
    for spec in specs[:-1]:
        if any((root / spec.relpath).is_file() for root in data_roots()):
            return fetch(spec), spec
    return fetch(specs[-1]), specs[-1]


def read_corpus(c: Corpus, lang: str) -> tuple[list[str], Path]:
    path, _ = locate(c.files[lang])
    lines = read_sgm(path) if c.fmt == "sgml" else read_lines(path)
    return lines, path


def read_bitext(task: str, name: str) -> tuple[dict[str, list[str]], dict[str, Path]]:
    """Both sides of corpus ``name`` of ``task``: lines and files, checked to be parallel."""
    c = corpus(task, name)
    lines, paths = {}, {}
    for lang in LANGS[task]:
        lines[lang], paths[lang] = read_corpus(c, lang)
    sizes = {lang: len(v) for lang, v in lines.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{task}/{name}: the two sides have different numbers of sentences {sizes} "
                        f"({', '.join(map(str, paths.values()))}); the files are truncated or mismatched")
    return lines, paths
