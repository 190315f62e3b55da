"""MT splits → fairseq's binarized format (``fairseq-preprocess`` layout), cached and keyed on every input.

A split is a corpus name with an optional Python slice, e.g. ``test``, ``valid[:6783]``, ``newstest2014[2500:]``.
Raw corpora are Moses-tokenized (settings from ``mt_corpora``) and BPE'd with ``bpe_codes`` or with codes learned on
the train split; processed corpora are used as they are. The dictionary is fairseq's ``Dictionary`` built from the
train split (joined or per language, ``--thresholdsrc/tgt``, padding factor 8) and each split is written with
fairseq's mmap ``indexed_dataset`` builder, so the folder is also valid input for ``fairseq-train``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from normexp.atomic import atomic_write_text
from normexp.tasks.files import DataError, cache_dir, fetch, sha256_of
from normexp.tasks.translation.corpora import LANGS, corpus, read_bitext
from normexp.tasks.translation.text import Bpe, Moses, detokenize, learn_bpe, remove_bpe

VERSION = 1  # bump when the preparation below changes its output
SPLITS = ("train", "valid", "test")
_SPEC = re.compile(r"^(\w+)(?:\[(-?\d*):(-?\d*)\])?$")


@dataclass(frozen=True)
class DataOptions:
    splits: tuple[str, str, str]  # train, valid, test specs
    bpe_codes: str = ""  # relpath of BPE codes for raw corpora ("" and bpe_merges 0: word level)
    bpe_merges: int = 0  # learn this many merges on the (raw) train split when bpe_codes is ""
    joined_dictionary: bool = True
    dict_threshold: int = 0


def parse_split(spec: str) -> tuple[str, slice]:
    match = _SPEC.match(spec.replace(" ", ""))
    if not match:
        raise ValueError(f"split {spec!r} is not valid: write a corpus name with an optional slice, e.g. "
                         "'valid' or 'valid[:6783]' or 'newstest2014[2500:]'")
    name, start, stop = match.groups()
    return name, slice(int(start) if start else None, int(stop) if stop else None)


@lru_cache(maxsize=None)
def _file_sha(path: str, size: int, mtime: float) -> str:  # noqa: ARG001 - size/mtime key the memo
    return sha256_of(Path(path))


def file_sha(path: Path) -> str:
    stat = path.stat()
    return _file_sha(str(path), stat.st_size, stat.st_mtime)


def prepare(task: str, opts: DataOptions) -> Path:
    """The cached folder for ``task`` under ``opts`` (built on first use): dicts, binarized splits, text, refs."""
    src, tgt = LANGS[task]
    parts, key_files = {}, {}
    for split, spec in zip(SPLITS, opts.splits):
        name, cut = parse_split(spec)
        lines, paths = read_bitext(task, name)
        if not lines[src][cut]:
            raise ValueError(f"task.{split}={spec!r} selects no sentences ({name} has {len(lines[src])})")
        parts[split] = (name, cut, lines)
        key_files[split] = {lang: file_sha(p) for lang, p in paths.items()}
    codes = fetch_codes(opts.bpe_codes) if opts.bpe_codes else None
    key = {"version": VERSION, "task": task, "options": asdict(opts), "files": key_files,
           "corpora": {s: corpus_settings(task, p[0]) for s, p in parts.items()},
           "codes": file_sha(codes) if codes else None}
    digest = _digest(key)
    target = cache_dir() / "mt" / f"{task}-{digest}"
    if (target / "manifest.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        manifest = _build(task, opts, parts, codes, tmp)
        manifest["key"] = key
        atomic_write_text(tmp / "manifest.json", json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, target)  # atomic; a concurrent builder that got there first wins
        except OSError:
            if not (target / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def corpus_settings(task: str, name: str) -> dict:
    c = corpus(task, name)
    return {"fmt": c.fmt, "processed": c.processed, "aggressive": c.aggressive, "lowercase": c.lowercase}


def fetch_codes(relpath: str) -> Path:
    from normexp.tasks.files import FileSpec

    return fetch(FileSpec(relpath, note="BPE codes come with the prepared data (scripts/prepare_mt.py)."))


def _digest(key: dict) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _build(task: str, opts: DataOptions, parts: dict, codes_path: Path | None, out: Path) -> dict:
    from fairseq.data import Dictionary

    src, tgt = LANGS[task]
    text, refs, raw_splits = {}, {}, []
    for split, (name, cut, lines) in parts.items():
        c = corpus(task, name)
        sides = {lang: lines[lang][cut] for lang in (src, tgt)}
        if not c.processed:
            raw_splits.append(split)
            refs[split] = sides[tgt]  # the published sentences: the sacreBLEU reference
            sides = {lang: Moses(lang, aggressive=c.aggressive, lowercase=c.lowercase).map(v)
                     for lang, v in sides.items()}
        text[split] = sides
    codes = codes_path.read_text(encoding="utf-8") if codes_path else None
    if codes is None and opts.bpe_merges > 0 and raw_splits:
        if "train" not in raw_splits:
            raise ValueError("task.bpe_merges learns BPE on a raw train split; this train split is already processed")
        codes = learn_bpe(text["train"][src] + text["train"][tgt], opts.bpe_merges)
    if codes is not None:
        atomic_write_text(out / "code", codes)
        bpe = Bpe(codes)
        for split in raw_splits:
            text[split] = {lang: bpe.map(v) for lang, v in text[split].items()}
    for split, sides in text.items():
        for lang, lines in sides.items():
            atomic_write_text(out / f"{split}.{lang}", "".join(s + "\n" for s in lines))
        if split != "train":  # processed corpora have no published detokenized text: detokenize ours
            ref = refs.get(split) or detokenize([remove_bpe(s) for s in sides[tgt]], tgt)
            atomic_write_text(out / f"{split}.ref.{tgt}", "".join(s + "\n" for s in ref))
    dicts = {}
    for lang in (src, tgt):
        if opts.joined_dictionary and dicts:
            dicts[lang] = dicts[src]
            continue
        d = Dictionary()
        for side in ((src, tgt) if opts.joined_dictionary else (lang,)):
            Dictionary.add_file_to_dictionary(str(out / f"train.{side}"), d, _tokenize_line, 1)
        d.finalize(threshold=opts.dict_threshold, padding_factor=8)
        dicts[lang] = d
    for lang, d in dicts.items():
        d.save(str(out / f"dict.{lang}.txt"))
    sizes, unk = {}, {}
    for split in SPLITS:
        for lang in (src, tgt):
            n, n_unk = binarize(out / f"{split}.{lang}", dicts[lang], out / f"{split}.{src}-{tgt}.{lang}")
            unk[f"{split}.{lang}"] = round(n_unk / max(n, 1), 5)
        sizes[split] = len(text[split][src])
    return {"sizes": sizes, "unk_rate": unk, "dict_sizes": {lang: len(d) for lang, d in dicts.items()},
            "splits": dict(zip(SPLITS, opts.splits)), "raw_splits": raw_splits,
            "references": {s: ("published text" if s in raw_splits else "Moses-detokenized tokenized text")
                           for s in SPLITS if s != "train"}}


def _tokenize_line(line: str) -> list[str]:
    from fairseq.tokenizer import tokenize_line

    return tokenize_line(line)


def binarize(text_path: Path, dictionary, prefix: Path) -> tuple[int, int]:
    """``fairseq-preprocess`` for one file: ids with </s> appended, mmap ``.bin``/``.idx``. Returns (tokens, unks)."""
    from fairseq.data import indexed_dataset

    builder = indexed_dataset.make_builder(f"{prefix}.bin", impl="mmap", vocab_size=len(dictionary))
    tokens = unks = 0
    with open(text_path, encoding="utf-8") as f:
        for line in f:
            ids = dictionary.encode_line(line, add_if_not_exist=False, append_eos=True)
            tokens += len(ids)
            unks += int((ids == dictionary.unk_index).sum())
            builder.add_item(ids)
    builder.finalize(f"{prefix}.idx")
    return tokens, unks


def load_split(folder: Path, task: str, split: str, dicts: dict, shuffle: bool):
    """fairseq's ``LanguagePairDataset`` over one binarized split (source left-padded, as its translation task)."""
    from fairseq.data import LanguagePairDataset, data_utils

    src, tgt = LANGS[task]
    sides = {}
    for lang in (src, tgt):
        prefix = str(folder / f"{split}.{src}-{tgt}.{lang}")
        sides[lang] = data_utils.load_indexed_dataset(prefix, dicts[lang], dataset_impl="mmap")
        if sides[lang] is None:
            raise DataError(f"binarized split {prefix}.bin/.idx is missing: delete {folder} to rebuild it")
    return LanguagePairDataset(sides[src], sides[src].sizes, dicts[src], sides[tgt], sides[tgt].sizes, dicts[tgt],
                               left_pad_source=True, left_pad_target=False, shuffle=shuffle)


def load_dicts(folder: Path, task: str) -> dict:
    from fairseq.data import Dictionary

    return {lang: Dictionary.load(str(folder / f"dict.{lang}.txt")) for lang in LANGS[task]}


def read_refs(folder: Path, task: str, split: str) -> list[str]:
    return (folder / f"{split}.ref.{LANGS[task][1]}").read_text(encoding="utf-8").split("\n")[:-1]
