"""Reading dependency trees: NLTK's ``.dp`` files (also inside its zip), CoNLL-X and CoNLL-U, through one reader.

Line formats, told apart by the number of tab-separated columns:
- 3 columns ``word tag head`` (NLTK's WSJ sample, no relation labels), 4 columns ``word tag head rel``;
- 10 columns: CoNLL-X / CoNLL-U. The tag is column 5 (CoNLL-X POSTAG, CoNLL-U XPOS: the PTB tag that the punctuation
  rule is written for), column 4 (CPOSTAG / UPOS) when column 5 is ``_``. Head is column 7, relation column 8.
  CoNLL-U comment lines (``#`` ..., unless they read as a ``.dp`` token: the word ``#``), multi-word token ranges (``1-2``) and empty nodes (``1.1``) are skipped.
Sentences are separated by blank lines. Heads are 1-based; 0 is the root.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from normexp.tasks.files import DataError, FileSpec, data_roots, fetch

# NLTK's 10% WSJ sample (docs/data.md). nltk_data has no release of its own: its GitHub copy is the source.
SAMPLE = FileSpec(
    "ptb_dep_sample/dependency_treebank.zip",
    sha256="0df483999f1391f32b141d6047d8ce19efd0a5a3e63ca019bfc4af8530f51fbd",
    urls=("https://raw.githubusercontent.com/nltk/nltk_data/gh-pages/packages/corpora/dependency_treebank.zip",),
)
SAMPLE_MEMBER = re.compile(r"dependency_treebank/wsj_(\d{4})\.dp$")
# The config option that names each split's files (the trainer's "valid" is the treebank's dev set).
SAMPLE_OPTION = {"train": "sample_train", "valid": "sample_dev", "test": "sample_test"}
CONLL_OPTION = {"train": "train_file", "valid": "dev_file", "test": "test_file"}


@dataclass
class Sentence:
    words: list[str]
    tags: list[str]
    heads: list[int]  # heads[i] is the head of token i + 1 (0: the root)
    labels: list[str] | None  # relation labels, None when the source has none

    def __len__(self) -> int:
        return len(self.words)


def parse_lines(lines: Iterable[str], source: str) -> list[Sentence]:
    """Sentences of a ``.dp`` / CoNLL-X / CoNLL-U text; ``source`` names the file in error messages."""
    sentences, rows = [], []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            if rows:
                sentences.append(_sentence(rows, source))
                rows = []
            continue
        cols = line.split("\t")
        if line.startswith("#") and not (len(cols) in (3, 4) and cols[2].isdigit()):
            continue  # a CoNLL-U comment; a .dp token may be "#" (the pound sign, tag #)
        if len(cols) == 10:
            if "-" in cols[0] or "." in cols[0]:
                continue
            tag = cols[4] if cols[4] != "_" else cols[3]
            row = (cols[1], tag, cols[6], cols[7])
        elif len(cols) in (3, 4):
            row = (cols[0], cols[1], cols[2], cols[3] if len(cols) == 4 else None)
        else:
            raise DataError(f"{source}:{number}: {len(cols)} tab-separated columns; expected 3 (word tag head), "
                            "4 (word tag head rel) or 10 (CoNLL-X / CoNLL-U)")
        if not row[2].isdigit():
            raise DataError(f"{source}:{number}: head {row[2]!r} is not a number")
        rows.append((*row, number))
    if rows:
        sentences.append(_sentence(rows, source))
    return sentences


def _sentence(rows: list[tuple], source: str) -> Sentence:
    heads = [int(r[2]) for r in rows]
    if any(h > len(rows) for h in heads):
        raise DataError(f"{source}:{rows[0][4]}: a head points past the sentence's {len(rows)} tokens")
    labels = [r[3] for r in rows]
    has_labels = all(lab not in (None, "_") for lab in labels)
    return Sentence([r[0] for r in rows], [r[1] for r in rows], heads, labels if has_labels else None)


def read_sample(path: Path) -> dict[int, list[Sentence]]:
    """NLTK's ``dependency_treebank.zip``: WSJ file number (1..199) → its sentences."""
    try:
        with zipfile.ZipFile(path) as archive:
            files = {int(m.group(1)): name for name in archive.namelist() if (m := SAMPLE_MEMBER.match(name))}
            if not files:
                raise DataError(f"{path} holds no dependency_treebank/wsj_NNNN.dp files: it is not NLTK's sample")
            return {num: parse_lines(archive.read(name).decode("utf-8").split("\n"), f"{path}:{name}")
                    for num, name in sorted(files.items())}
    except zipfile.BadZipFile as e:
        raise DataError(f"{path} is not a readable zip ({e}); delete it and run again to re-fetch it") from e


def file_range(text: str) -> range:
    """``"0001-0159"`` → WSJ file numbers 1..159."""
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if not m or int(m.group(1)) > int(m.group(2)):
        raise ValueError(f"file range {text!r} is not valid: write first-last, e.g. 0001-0159")
    return range(int(m.group(1)), int(m.group(2)) + 1)


def sample_splits(ranges: dict[str, str]) -> tuple[dict[str, list[Sentence]], dict[str, str]]:
    """The sample split by WSJ file number: split → sentences, and the files each split holds (for the record)."""
    by_file = read_sample(fetch(SAMPLE))
    taken: dict[int, str] = {}
    splits = {}
    for split, text in ranges.items():
        numbers = [n for n in file_range(text) if n in by_file]
        if not numbers:
            raise ValueError(f"task.{SAMPLE_OPTION[split]}={text!r} selects none of the sample's files "
                             "wsj_0001-wsj_0199")
        if clash := [n for n in numbers if n in taken]:
            raise ValueError(f"task.{SAMPLE_OPTION[split]}={text!r} overlaps task.{SAMPLE_OPTION[taken[clash[0]]]} "
                             f"(file wsj_{clash[0]:04d})")
        taken.update(dict.fromkeys(numbers, split))
        splits[split] = [s for n in numbers for s in by_file[n]]
    return splits, {split: f"{SAMPLE.relpath}: wsj_{text.strip()}.dp" for split, text in ranges.items()}


def resolve(path: str, option: str) -> Path:
    """A CoNLL file given as an absolute path or relative to a data root; a DataError names what was looked for."""
    if not path:
        raise DataError(f"task.source=conll needs task.{option}: the path of a CoNLL-X or CoNLL-U file "
                        "(e.g. WSJ section 02-21 / 22 / 23 converted to Stanford dependencies)")
    candidates = [Path(path).expanduser()] if Path(path).expanduser().is_absolute() else [r / path for r in data_roots()]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataError(f"task.{option}={path!r} not found (looked at {', '.join(map(str, candidates))}). The full PTB is "
                    "LDC-licensed: convert sections 02-21 / 22 / 23 to CoNLL-X or CoNLL-U yourself and give their "
                    "paths, or set NORMEXP_DATA_ROOT to the folder that holds them.")


def conll_splits(files: dict[str, str]) -> tuple[dict[str, list[Sentence]], dict[str, str]]:
    """split → sentences of the CoNLL file named by ``task.<split>_file``."""
    splits, paths = {}, {}
    for split, path in files.items():
        resolved = resolve(path, CONLL_OPTION[split])
        splits[split] = parse_lines(resolved.read_text(encoding="utf-8").split("\n"), str(resolved))
        if not splits[split]:
            raise DataError(f"{resolved} (task.{CONLL_OPTION[split]}) holds no sentences")
        paths[split] = str(resolved)
    return splits, paths


def is_projective(heads: list[int]) -> bool:
    """No two arcs cross (the arc from the root, position 0, included)."""
    arcs = sorted((min(d, h), max(d, h)) for d, h in enumerate(heads, 1))
    for i, (a, b) in enumerate(arcs):
        for c, d in arcs[i + 1 :]:
            if c >= b:
                break
            if a < c < b < d:
                return False
    return True
