"""Deterministic shuffled mini-batches over in-memory tensors (the order depends on seed and epoch alone)."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


class ShuffledBatches:
    """Batches of rows of ``tensors`` (all with the same first dim), reshuffled each epoch; last partial batch kept."""

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, seed: int, epoch: int):
        self.tensors, self.batch_size = tensors, batch_size
        self.order = epoch_permutation(len(tensors[0]), seed, epoch)

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        for start in range(0, len(self.order), self.batch_size):
            index = self.order[start : start + self.batch_size]
            yield tuple(t[index] for t in self.tensors)


def sequential_batches(tensors: Sequence[torch.Tensor], batch_size: int) -> Iterator[tuple[torch.Tensor, ...]]:
    for start in range(0, len(tensors[0]), batch_size):
        yield tuple(t[start : start + batch_size] for t in tensors)
