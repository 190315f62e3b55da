"""Readers, splits, vocabulary and encoding for the sentence-classification tasks (RT and SST-5).

- RT (Pang & Lee sentence polarity v1.0): ``rt-polarity.{pos,neg}``, one lower-cased, pre-tokenized sentence per line,
  in cp1252 (never UTF-8: the files hold 0x85/0x96/0x97 bytes). No official split: a seeded 8:1:1 split, or 10-fold
  cross-validation (``split_indices``).
- SST-5 (Socher et al. 2013): ``trainDevTestTrees_PTB.zip`` → ``trees/{train,dev,test}.txt``, one PTB tree per line,
  every node labelled 0–4. A sentence is the root label over the leaves; optionally every labelled phrase of the train
  trees is a training example too.
Vocabulary from the train split only; encoded splits are cached (``files.cached``) under a key that holds the input
checksums and every option that changes them.
"""
from __future__ import annotations

import collections
import hashlib
import os
import re
import tarfile
import zipfile
from pathlib import Path

import torch

from normexp.atomic import atomic_path

from normexp.tasks.files import DataError, FileSpec, data_roots, fetch, verify

PREPROCESS_VERSION = 1  # bump when reading/encoding changes: it is part of every cache key
PAD, UNK = 0, 1
SPECIALS = ("<pad>", "<unk>")

RT_ARCHIVE = FileSpec("rt_polarity/rt-polaritydata.tar.gz",  # the tarball's own checksum is unknown: members verified
                      urls=("https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz",))
RT_FILES = {  # label → file; sha256 from docs/data.md
    1: FileSpec("rt_polarity/rt-polarity.pos", "d79ef14009bbf87cd6be21f91c3ea1a3cbcb73b34dfb4231aef7bbcd7677abc4"),
    0: FileSpec("rt_polarity/rt-polarity.neg", "4af43bf489620b498a0852c5a8c6a535155dec7985fdfea782b8f7756b957ccc"),
}
SST_ZIP = FileSpec("sst/trainDevTestTrees_PTB.zip", "5c613a4f673fc74097d523a2c83f38e0cc462984d847b82c7aaf36b01cbbbfcc",
                   urls=("https://nlp.stanford.edu/sentiment/trainDevTestTrees_PTB.zip",))
SST_MEMBERS = {  # our split name → (member, sha256)
    "train": ("trees/train.txt", "e2f3f41b0b1e6d4dddc0effe3bfc2d27ed8928079aa9a03d652311614fc5feb7"),
    "valid": ("trees/dev.txt", "0e9336aed6e4730e19f58d00a77b3f0297efdb755f7b5e598c98a05e3f97ea40"),
    "test": ("trees/test.txt", "6e54806dee95cf80cd918e7dfb3f6770f6df24bf826f289a4d1f709e1c8f6761"),
}

Example = tuple[list[str], int]  # (tokens, label)


# ---- RT --------------------------------------------------------------------------------------------------------------
def extract_verified(archive: Path, member: str, spec: FileSpec, target: Path) -> Path:
    """Extracts ``member`` of a tar archive to ``target``, atomically, only if it matches ``spec``'s checksum."""
    with atomic_path(target, suffix=".part") as tmp:
        with tarfile.open(archive) as tar, open(tmp, "wb") as out:
            try:
                out.write(tar.extractfile(member).read())
            except (KeyError, AttributeError) as e:
                raise DataError(f"{archive} has no file {member!r}: not the rt-polaritydata archive") from e
        verify(tmp, spec)
    return target


def rt_file(label: int) -> Path:
    """A verified ``rt-polarity.{pos,neg}``: from a data root, else extracted from the downloaded Cornell tarball."""
    spec = RT_FILES[label]
    for root in data_roots():
        if (root / spec.relpath).is_file():
            return fetch(spec)  # verifies
    archive = fetch(RT_ARCHIVE)
    member = "rt-polaritydata/" + Path(spec.relpath).name
    return extract_verified(archive, member, spec, data_roots()[-1] / spec.relpath)


def read_rt_lines(path: Path, label: int) -> list[Example]:
    text = path.read_bytes().decode("cp1252")  # the original single-byte encoding (docs/data.md)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if any(not line.strip() for line in lines):
        raise DataError(f"{path} has empty lines: not the original rt-polarity file")
    return [(line.split(), label) for line in lines]


def read_rt() -> list[Example]:
    """The 10,662 RT sentences: the 5,331 positives (label 1) then the 5,331 negatives (label 0)."""
    return read_rt_lines(rt_file(1), 1) + read_rt_lines(rt_file(0), 0)


def split_indices(n: int, mode: str, seed: int, fold: int = 0) -> dict[str, list[int]]:
    """Disjoint train/valid/test indices from a seeded permutation cut into 10 near-equal folds.

    ``fixed``: test = fold 0, valid = fold 1, train = the other 8 (the 8:1:1 split, 1066/1066/8530 for RT).
    ``cv10``: test = fold ``fold``, valid = fold ``fold+1 mod 10`` (selects the best epoch), train = the other 8;
    the CV estimate is the mean over ``fold=0..9``.
    """
    if mode not in ("fixed", "cv10"):
        raise ValueError(f"task.split={mode!r} is not valid: choose 'fixed' (8:1:1) or 'cv10' (10-fold CV)")
    if not 0 <= fold < 10:
        raise ValueError(f"task.fold={fold} is not valid: choose 0..9 (the fold held out as test)")
    if mode == "fixed" and fold != 0:
        raise ValueError("task.fold only applies to task.split=cv10; leave it at 0 with split=fixed")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    bounds = [round(i * n / 10) for i in range(11)]
    folds = [order[bounds[i]:bounds[i + 1]] for i in range(10)]
    test, valid = fold, (fold + 1) % 10
    train = [i for k, f in enumerate(folds) if k not in (test, valid) for i in f]
    return {"train": train, "valid": folds[valid], "test": folds[test]}


# ---- SST -------------------------------------------------------------------------------------------------------------
_TREE_TOKEN = re.compile(r"\(|\)|[^\s()]+")


def parse_tree(line: str) -> list[tuple[int, list[str]]]:
    """Every node of a PTB tree ``(label child ...)`` as (label, leaves under it); the root comes first."""
    nodes: list[tuple[int, list[str]]] = []
    stack: list[tuple[int, int]] = []  # (label, index of its first leaf)
    leaves: list[str] = []
    expect_label = False
    for tok in _TREE_TOKEN.findall(line):
        if tok == "(":
            expect_label = True
        elif tok == ")":
            if not stack:
                raise DataError(f"unbalanced tree (extra ')'): {line[:80]!r}")
            label, start = stack.pop()
            nodes.append((label, leaves[start:]))
        elif expect_label:
            if not tok.isdigit() or not 0 <= int(tok) <= 4:
                raise DataError(f"tree node label {tok!r} is not 0..4: {line[:80]!r}")
            stack.append((int(tok), len(leaves)))
            expect_label = False
        else:
            leaves.append(tok)
    if stack or not nodes:
        raise DataError(f"unbalanced or empty tree: {line[:80]!r}")
    return nodes[::-1]  # post-order reversed: the root first


def read_sst(split: str, phrases: bool = False) -> list[Example]:
    """SST-5 ``split`` (train/valid/test): the sentences, or with ``phrases`` every distinct labelled phrase too."""
    member, sha256 = SST_MEMBERS[split]
    archive = fetch(SST_ZIP)
    with zipfile.ZipFile(archive) as zf:
        raw = zf.read(member)
    verify_bytes(raw, sha256, f"{archive}:{member}")
    examples, seen = [], set()
    for line in raw.decode("utf-8").splitlines():
        nodes = parse_tree(line)
        for label, leaves in nodes if phrases else nodes[:1]:
            key = tuple(leaves)
            if phrases and key in seen:  # phrases repeat across trees with the same label: keep one copy
                continue
            seen.add(key)
            examples.append((list(leaves), label))
    return examples


def verify_bytes(raw: bytes, sha256: str, name: str) -> None:
    if (got := hashlib.sha256(raw).hexdigest()) != sha256:
        raise DataError(f"{name} has sha256 {got}, expected {sha256}: the archive is not the original; replace it")


# ---- vocabulary and encoding -----------------------------------------------------------------------------------------
def build_vocab(examples: list[Example], min_freq: int) -> list[str]:
    """Specials, then train tokens seen ≥ ``min_freq`` times, most frequent first (ties alphabetically)."""
    counts = collections.Counter(tok for tokens, _ in examples for tok in tokens)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    return [*SPECIALS, *words]


def encode(examples: list[Example], vocab: list[str], max_len: int) -> dict[str, torch.Tensor]:
    """Token ids padded with PAD to the longest (≤ ``max_len``) sentence; longer ones are cut at ``max_len``."""
    index = {w: i for i, w in enumerate(vocab)}
    width = min(max_len, max(len(t) for t, _ in examples))
    tokens = torch.full((len(examples), width), PAD, dtype=torch.long)
    for row, (toks, _) in enumerate(examples):
        ids = [index.get(t, UNK) for t in toks[:max_len]]
        tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {
        "tokens": tokens,
        "labels": torch.tensor([label for _, label in examples], dtype=torch.long),
        "lengths": torch.tensor([len(t) for t, _ in examples], dtype=torch.long),  # before truncation
    }
