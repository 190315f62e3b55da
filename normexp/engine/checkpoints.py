"""Training checkpoints: atomic, rotated, complete enough to resume bit-for-bit.

A checkpoint holds model, optimizer and scheduler state, every RNG state, the position in the data order and the
metric history. Files are written to a temp name and renamed, so a kill mid-write leaves the previous one intact.
Everything is saved as tensors and plain containers, so ``torch.load(weights_only=True)`` (torch's default) reads it.
"""
from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from normexp.atomic import atomic_path

log = logging.getLogger("normexp")
STEP_FILE = re.compile(r"step-(\d+)\.pt$")


def rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached": cached},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: Path) -> None:
    try:
        with atomic_path(path) as tmp:
            torch.save(obj, tmp)
    except (OSError, RuntimeError) as e:  # torch reports a full disk as an opaque "enforce fail"
        raise OSError(f"could not write {path} (is the disk full?): {str(e).splitlines()[0]}. The earlier "
                      "checkpoints are intact: make room and rerun the same command to resume") from e


class CheckpointDir:
    """``<run_dir>/checkpoints``: ``step-NNNNNNNN.pt`` (the last ``keep`` kept) and ``best.pt`` (best model weights)."""

    def __init__(self, run_dir: Path, keep: int):
        self.path = Path(run_dir) / "checkpoints"
        self.keep = max(1, keep)

    def save(self, step: int, state: dict[str, Any]) -> Path:
        target = self.path / f"step-{step:08d}.pt"
        atomic_save(state, target)
        for old in self.step_files()[: -self.keep]:
            old.unlink(missing_ok=True)
        return target

    def step_files(self) -> list[Path]:
        if not self.path.is_dir():
            return []
        return sorted(p for p in self.path.iterdir() if STEP_FILE.search(p.name))

    def latest(self) -> dict[str, Any] | None:
        """The newest readable checkpoint (an unreadable one is skipped, never trusted, and said so)."""
        for path in reversed(self.step_files()):
            try:
                return torch.load(path, weights_only=True, map_location="cpu")
            except Exception as e:  # noqa: BLE001 - fall back to the previous checkpoint
                log.warning("checkpoint %s is unreadable (%s: %s): trying the one before it (the file is kept)",
                            path, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        return None

    def last_states(self, n: int) -> list[dict[str, Any]]:
        return [torch.load(p, weights_only=True, map_location="cpu") for p in self.step_files()[-n:]]

    def save_best(self, model_state: dict[str, torch.Tensor]) -> None:
        atomic_save(model_state, self.path / "best.pt")

    def load_best(self) -> dict[str, torch.Tensor] | None:
        path = self.path / "best.pt"
        return torch.load(path, weights_only=True, map_location="cpu") if path.is_file() else None


def average_model_states(states: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the ``model`` weights of several checkpoints (fairseq's average_checkpoints)."""
    models = [s["model"] for s in states]
    out = {}
    for key, first in models[0].items():
        if first.is_floating_point():
            out[key] = sum(m[key].double() for m in models).div(len(models)).to(first.dtype)
        else:  # counters and integer buffers: take the newest
            out[key] = models[-1][key]
    return out
