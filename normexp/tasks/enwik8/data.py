"""enwik8 (the Hutter Prize's first 10^8 bytes of an English Wikipedia XML dump) and its Transformer-XL preparation.

Transformer-XL's ``getdata.sh`` runs salesforce/awd-lstm-lm ``data/enwik8/prep_enwik8.py``: the zip's ``enwik8`` member
is cut into the first 90M bytes (train), the next 5M (valid) and the last 5M (test); each byte becomes one token (its
decimal value) and every newline byte becomes a line break. Transformer-XL's ``data_utils.py`` then reads those files
line by line without an end-of-line symbol (``add_eos=False``), so **newline bytes are dropped** and the vocabulary is
the other byte values that occur in train + valid + test, most frequent first (204 for enwik8, space first: the log
in laekov/fastmoe#163). ``drop_newlines=False`` keeps them instead. Multi-byte UTF-8 characters are several tokens:
bpc is bits per byte-token, as in the papers.

Checksums: ``enwik8.zip`` (36,445,475 bytes) sha256 from huggingface/datasets ``datasets/enwik8/dataset_infos.json``;
the decompressed file's size and SHA-1 as published by its author (mattmahoney.net/dc/textdata.html, quoted in
dmlc/gluon-nlp ``src/gluonnlp/data/corpora/large_text_compression_benchmark.py``).
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from normexp.tasks.files import DataError, FileSpec, data_roots, fetch

ENWIK8_ZIP = FileSpec(
    "enwik8/enwik8.zip",
    sha256="547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
    urls=("http://mattmahoney.net/dc/enwik8.zip", "https://mattmahoney.net/dc/enwik8.zip"),
)
ENWIK8_RAW = "enwik8/enwik8"  # the unzipped file, also accepted under a data root
ENWIK8_BYTES = 100_000_000
ENWIK8_SHA1 = "57b8363b814821dc9d47aa4d41f58733519076b2"
EVAL_BYTES = 5_000_000  # prep_enwik8.py's num_test_chars: valid and test are 5M bytes each
EVAL_FRACTION = EVAL_BYTES / ENWIK8_BYTES  # the same 90/5/5 proportions for any other text file
NEWLINE = ord("\n")
SPLITS = ("train", "valid", "test")


def check_enwik8(data: bytes, where: Path) -> bytes:
    if len(data) != ENWIK8_BYTES or hashlib.sha1(data).hexdigest() != ENWIK8_SHA1:
        raise DataError(
            f"{where} does not hold the original enwik8 ({len(data)} bytes, sha1 {hashlib.sha1(data).hexdigest()}; "
            f"expected {ENWIK8_BYTES} bytes, sha1 {ENWIK8_SHA1}). Delete it and run again to download "
            f"{ENWIK8_ZIP.urls[0]}, or replace it with the original file."
        )
    return data


def read_enwik8() -> tuple[bytes, str]:
    """The 100,000,000 bytes of enwik8 and where they came from: an unzipped ``enwik8/enwik8`` under a data root, or
    the verified ``enwik8/enwik8.zip`` (found or downloaded by ``fetch``)."""
    for root in data_roots():
        raw = root / ENWIK8_RAW
        if raw.is_file():
            return check_enwik8(raw.read_bytes(), raw), str(raw)
    path = fetch(ENWIK8_ZIP)
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("enwik8")
    except (zipfile.BadZipFile, KeyError) as e:
        raise DataError(f"{path} is not the enwik8 archive ({e}); delete it and run again to re-download it") from e
    return check_enwik8(data, path), f"{path}:enwik8"


def read_text_file(path: str) -> tuple[bytes, Path]:
    """The bytes of a user-given file: an existing path, or a path relative to a data root."""
    given = Path(path).expanduser()
    candidates = [given] if given.is_absolute() else [given, *(root / given for root in data_roots())]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.read_bytes(), candidate.resolve()
    raise DataError(f"task.data_file={path!r} not found (looked at {', '.join(map(str, candidates))}); give an "
                    "existing file, or a path relative to NORMEXP_DATA_ROOT")


def split_bytes(data: bytes, eval_bytes: int) -> dict[str, bytes]:
    """prep_enwik8.py's split: test = the last ``eval_bytes``, valid = the ``eval_bytes`` before, train = the rest."""
    if not (0 < eval_bytes and 2 * eval_bytes < len(data)):
        raise DataError(f"{len(data)} bytes cannot be split into train and two held-out parts of {eval_bytes} bytes")
    return {"train": data[: -2 * eval_bytes], "valid": data[-2 * eval_bytes : -eval_bytes], "test": data[-eval_bytes:]}


def byte_vocab(parts: dict[str, bytes], drop_newlines: bool) -> list[int]:
    """Byte values occurring in any split (newline excluded when dropped), most frequent first (ties: by value)."""
    counts = sum(np.bincount(np.frombuffer(p, dtype=np.uint8), minlength=256) for p in parts.values())
    if drop_newlines:
        counts[NEWLINE] = 0
    present = np.flatnonzero(counts)
    return [int(b) for b in present[np.argsort(-counts[present], kind="stable")]]


def encode(data: bytes, vocab: list[int], drop_newlines: bool) -> torch.Tensor:
    """The token ids of ``data`` as a 1-D uint8 tensor (every vocabulary fits a byte)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    if drop_newlines:
        raw = raw[raw != NEWLINE]
    table = np.full(256, -1, dtype=np.int16)
    table[vocab] = np.arange(len(vocab))
    ids = table[raw]
    if (ids < 0).any():
        raise ValueError(f"bytes {sorted(set(raw[ids < 0].tolist()))} are not in the vocabulary")
    return torch.from_numpy(ids.astype(np.uint8))


def decode(ids: torch.Tensor, vocab: list[int]) -> bytes:
    return bytes(np.asarray(vocab, dtype=np.uint8)[ids.numpy()].tobytes())
