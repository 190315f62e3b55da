"""Who owns a run dir, and starting a finished run over without losing it.

A run dir is owned by one live process: ``owned`` holds an OS lock (``fcntl.flock``) on ``<run_dir>/.lock`` for the
job's life. The kernel releases it when the process ends, however it ends, so a killed run never leaves a stale lock;
a second process asking for it is refused at once, naming the owner's pid.

``set_aside`` moves a run dir's results (record, checkpoints, W&B files) into ``<run_dir>/previous-<UTC time>/``
(``trainer.resume=restart``): the run starts over and nothing is deleted. Record scans skip those folders.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from normexp.records import SET_ASIDE_PREFIX

LOCK_NAME = ".lock"
# Left in place by ``set_aside``: the lock, Hydra's files for the current job and its open log file.
KEPT = (LOCK_NAME, ".hydra")


class RunDirBusy(RuntimeError):
    """Another live process owns the run dir."""


@contextmanager
def owned(run_dir: Path) -> Iterator[None]:
    """Holds ``run_dir``'s lock for the block; raises ``RunDirBusy`` if another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunDirBusy(f"{run_dir} is already running (pid {owner}): wait for it to finish, or stop it "
                             "first; rerun this command to resume it afterwards") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def set_aside(run_dir: Path) -> Path | None:
    """Moves ``run_dir``'s results into ``run_dir/previous-<UTC time>/``; returns that folder (None: nothing there)."""
    run_dir = Path(run_dir)
    results = [p for p in run_dir.iterdir() if p.name not in KEPT and not p.name.startswith(SET_ASIDE_PREFIX)
               and p.suffix != ".log"] if run_dir.is_dir() else []
    if not results:
        return None
    target = run_dir / f"{SET_ASIDE_PREFIX}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    target.mkdir()
    for path in results:
        shutil.move(str(path), target / path.name)
    return target
