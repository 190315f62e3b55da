"""Finding, downloading and verifying the original data files; atomic writes and keyed caches.

Lookup order for a file ``relpath`` (e.g. ``mnist/t10k-labels-idx1-ubyte.gz``):
1. ``$NORMEXP_DATA_ROOT/relpath`` (CI and the tests point this at their copy of the data),
2. ``$NORMEXP_DOWNLOAD_DIR/relpath``, by default the checkout's ``data/`` (``~/.cache/normexp/data`` for a wheel),
3. download from the spec's public URLs (or, with ``$NORMEXP_MIRROR`` set, from ``$NORMEXP_MIRROR/relpath`` only: a
   cluster without internet access serves a copy laid out as a data root) into that folder, verified before it is
   moved into place; a failed or cut download leaves no file behind.
Every file found or fetched is checked against its SHA-256 (of the file, or of its decompressed content for ``.gz``),
on every run: the full checksum once, then, while the file keeps the size and mtime it had then, that stamp (kept under
the cache dir). A file changed since (truncated, edited, replaced) is checksummed again and refused, naming it.
``verified_sha256`` tells a record which checksums this process has checked, and only those.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from normexp.atomic import atomic_path, atomic_write_text

# relpath -> the checksum this process verified the file against (records state only these)
_VERIFIED: dict[str, str] = {}


def _default_data_dir() -> Path:
    """``data/`` of the repository when running from a checkout; ``~/.cache/normexp/data`` for an installed wheel."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "data").is_dir():
        return checkout / "data"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "normexp" / "data"


REPO_DATA = _default_data_dir()


class DataError(RuntimeError):
    """Missing or corrupt data; the message says which file and how to fix it."""


@dataclass(frozen=True)
class FileSpec:
    relpath: str
    sha256: str | None = None  # of the file as stored
    content_sha256: str | None = None  # of the decompressed content (for .gz files re-compressed by some mirrors)
    urls: tuple[str, ...] = field(default_factory=tuple)
    note: str = ""  # how to obtain it when there is no public URL


def data_roots() -> list[Path]:
    roots = []
    if os.environ.get("NORMEXP_DATA_ROOT"):
        roots.append(Path(os.environ["NORMEXP_DATA_ROOT"]).expanduser())
    roots.append(Path(os.environ.get("NORMEXP_DOWNLOAD_DIR", REPO_DATA)).expanduser())
    return roots


def sha256_of(path: Path, decompress: bool = False) -> str:
    digest = hashlib.sha256()
    opener = gzip.open if decompress else open
    try:
        with opener(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except (EOFError, gzip.BadGzipFile, OSError) as e:
        raise DataError(f"{path} is corrupt ({type(e).__name__}: {e}). Delete it and run again to download it, "
                        "or replace it with the original file.") from e
    return digest.hexdigest()


def verified_sha256(relpath: str) -> str | None:
    """The checksum ``relpath`` was verified against in this process; None if it was not."""
    return _VERIFIED.get(relpath)


def verify(path: Path, spec: FileSpec) -> None:
    if spec.sha256 or spec.content_sha256:
        _VERIFIED.pop(spec.relpath, None)
    _verify(path, spec)
    if spec.sha256 or spec.content_sha256:
        _VERIFIED[spec.relpath] = spec.sha256 or spec.content_sha256


def verify_stamped(path: Path, spec: FileSpec) -> None:
    """``verify``, cheaply: skipped while the file has the size and mtime it had when its checksum last matched."""
    stamp_file = cache_dir() / "verified" / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24] + ".json")
    stat = path.stat()
    stamp = {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
             "sha256": spec.sha256, "content_sha256": spec.content_sha256}
    try:
        if json.loads(stamp_file.read_text(encoding="utf-8")) == stamp:
            _VERIFIED[spec.relpath] = spec.sha256 or spec.content_sha256
            return
    except (OSError, ValueError):
        pass
    verify(path, spec)
    try:
        atomic_write_text(stamp_file, json.dumps(stamp))
    except OSError:  # a read-only cache dir: the checksum is simply computed again next time
        pass


def _verify(path: Path, spec: FileSpec) -> None:
    if spec.sha256 and (got := sha256_of(path)) == spec.sha256:
        return
    if spec.content_sha256:
        got = sha256_of(path, decompress=True)
        if got == spec.content_sha256:
            return
        want = spec.content_sha256
    elif spec.sha256:
        want = spec.sha256
    else:
        return
    raise DataError(
        f"{path} has the wrong checksum (sha256 {got}, expected {want}): the file is truncated or not the original. "
        "Delete it and run again to download it, or replace it with the original file."
    )


def fetch(spec: FileSpec) -> Path:
    """Path of a verified copy of ``spec``'s file, downloading it if no data root has it."""
    roots = data_roots()
    for root in roots:
        path = root / spec.relpath
        if path.is_file():
            verify_stamped(path, spec)
            return path
    urls = source_urls(spec)
    if not urls:
        raise DataError(
            f"data file {spec.relpath!r} not found under {', '.join(map(str, roots))}. {spec.note} "
            "Put it there (or set NORMEXP_DATA_ROOT to the folder that holds it)."
        )
    target = roots[-1] / spec.relpath
    errors = []
    for url in urls:
        try:
            return _download(url, target, spec)
        except Exception as e:  # noqa: BLE001 - try the next mirror, report all failures together
            errors.append(f"{url}: {e}")
    raise DataError(
        f"data file {spec.relpath!r} is not under {', '.join(map(str, roots))} and could not be downloaded:\n  "
        + "\n  ".join(errors)
        + f"\nDownload it by hand to {target} (or set NORMEXP_DATA_ROOT to a folder holding {spec.relpath})."
    )


def source_urls(spec: FileSpec) -> tuple[str, ...]:
    """Where ``spec``'s file is downloaded from: the mirror when ``$NORMEXP_MIRROR`` is set, else its public URLs."""
    mirror = os.environ.get("NORMEXP_MIRROR", "").strip()
    return (f"{mirror.rstrip('/')}/{spec.relpath}",) if mirror else spec.urls


def _download(url: str, target: Path, spec: FileSpec) -> Path:
    # only a complete, verified file ever appears under its real name; concurrent downloads each write a private
    # temp file and the last rename wins with identical bytes
    with atomic_path(target, suffix=".part") as tmp:
        size = 0
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            expected = response.headers.get("Content-Length")
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                size += len(chunk)
        if expected is not None and size != int(expected):
            raise DataError(f"the connection dropped after {size} of {expected} bytes")
        verify(tmp, spec)
    return target


def cache_dir() -> Path:
    return Path(os.environ.get("NORMEXP_CACHE_DIR", REPO_DATA / "cache")).expanduser()


def cached(name: str, key: dict[str, Any], build: Callable[[], Any]) -> Any:
    """``build()``'s result, cached under a file named by ``name`` and a hash of ``key``.

    ``key`` must hold everything that changes the result (input checksums, options, code version of the preprocessing).
    Concurrent builders each write a private temp file and rename it into place, so the cache is never torn.
    """
    import torch

    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{digest}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a cache file we cannot read is rebuilt, not trusted
            path.unlink(missing_ok=True)
    value = build()
    with atomic_path(path) as tmp:
        torch.save(value, tmp)
    return value
