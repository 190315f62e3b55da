"""Data-parallel training under ``torchrun``: detected from the environment (RANK, WORLD_SIZE), as nanoGPT does.

Each rank trains on every WORLD_SIZE-th batch of the task's one global order, so two ranks with batch B see exactly
the examples one process sees with batch 2B, and DDP averages their gradients. Only rank 0 writes records,
checkpoints and logs.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator

import torch
import torch.distributed as dist


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup(device_name: str) -> torch.device:
    """Initialises the process group when launched by torchrun; returns this rank's device."""
    if world_size() == 1:
        return _device(device_name)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def shard(batches: Iterable, n_batches: int | None) -> Iterator:
    """This rank's share of an epoch's batches: every world-th, truncated so that every rank gets as many."""
    world, me = world_size(), rank()
    if world == 1:
        yield from batches
        return
    usable = (n_batches // world) * world if n_batches is not None else None
    for index, batch in enumerate(batches):
        if usable is not None and index >= usable:
            break
        if index % world == me:
            yield batch


def mean_across_ranks(value: float, device: torch.device) -> float:
    """The loss every rank agrees on (so that all stop together when training diverges)."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / world_size()
