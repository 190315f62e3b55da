"""Data-parallel training under ``torchrun`` or a several-task submitit job: detected from the environment (RANK,
WORLD_SIZE), as nanoGPT does.

Each rank trains on every WORLD_SIZE-th batch of the task's one global order, so two ranks with batch B see exactly
the examples one process sees with batch 2B, DDP averages their gradients and the batchnorm variant normalizes over
the global batch (sync_batchnorm.py). Only rank 0 writes records,
checkpoints and logs.
"""
from __future__ import annotations

import functools
import os
import re
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from normexp.engine.sync_batchnorm import sync_batchnorms


def world_size() -> int:
    _adopt_submitit_tasks()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    _adopt_submitit_tasks()
    return int(os.environ.get("RANK", "0"))


@functools.cache
def _adopt_submitit_tasks() -> None:
    """One job spanning several tasks through submitit (the SLURM launcher's ``tasks_per_node``/``nodes``, or the local
    executor): torch.distributed's variables from submitit's JobEnvironment, as torchrun would set them. Rank 0's host
    is the rendezvous; the port is derived from the job id, so every task of the job picks the same one. Nothing
    changes under torchrun (WORLD_SIZE already set) or outside submitit."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    import submitit

    job = submitit.JobEnvironment()
    if job.num_tasks <= 1:
        return
    digits = re.sub(r"\D", "", str(job.job_id)) or "0"
    os.environ.update(RANK=str(job.global_rank), LOCAL_RANK=str(job.local_rank), WORLD_SIZE=str(job.num_tasks),
                      MASTER_ADDR=job.hostnames[0], MASTER_PORT=str(20000 + int(digits) % 20000))


def is_main() -> bool:
    return rank() == 0


def setup(device_name: str) -> torch.device:
    """Initialises the process group when launched by torchrun; returns this rank's device."""
    if world_size() == 1:
        return resolve_device(device_name)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def resolve_device(name: str) -> torch.device:
    """trainer.device as a torch device: auto is CUDA where torch sees one, else the CPU."""
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


def mean_across_ranks(value: torch.Tensor) -> torch.Tensor:
    """The loss every rank agrees on (so that all stop together when training diverges). A device tensor: under NCCL
    the all-reduce is queued on the device and the host does not wait for it."""
    if world_size() == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / world_size()


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The model the training loss runs through: under torchrun its batchnorm layers synchronised across ranks and the
    whole DDP-wrapped (one device per process); the plain model otherwise."""
    if world_size() == 1:
        return model
    sync_batchnorms(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, output_device=device.index if ids else None)
