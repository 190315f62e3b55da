"""The task protocol: everything the one trainer knows about a task.

A task owns its data (read from the original files), builds its model around a norm factory, computes the training loss
of a batch and evaluates a split into named metrics. It knows nothing of Hydra, of the optimizer or of the loop.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable

import torch
from torch import nn

from normexp.norms import NormFactory


class Task(ABC):
    """Subclass per task family; constructed from its plain config dataclass, a model config and a seed."""

    #: name of the metric the trainer selects the best checkpoint on (must be a key of ``evaluate``'s result)
    primary_metric: str = "loss"
    #: direction of the primary metric
    higher_is_better: bool = False

    @abstractmethod
    def build_model(self, norm: NormFactory) -> nn.Module:
        """The task's model, with every normalization site built by ``norm``."""

    @abstractmethod
    def train_batches(self, epoch: int) -> Iterable[Any]:
        """The training batches of one epoch, in an order fixed by the task's seed and ``epoch`` alone.

        Determinism matters: a resumed run regenerates the epoch and skips the batches it already trained on.
        Batches may be tensors, tuples or dicts of tensors; the trainer moves them to the model's device.
        """

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Mean training loss of ``batch`` (to backpropagate) and the number of units it covers (examples or tokens)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        """Metrics on ``split`` ("valid" or "test"): must hold "loss" and ``primary_metric``. Runs under no_grad."""

    def describe(self) -> dict[str, Any]:
        """Data provenance for the run record: files, split sizes, split seed, preprocessing choices."""
        return {}

    def start_epoch(self, epoch: int) -> None:
        """Hook for stateful tasks (e.g. reset recurrent memory); default: nothing."""

    def batches_per_epoch(self, epoch: int) -> int | None:
        """Number of batches ``train_batches(epoch)`` yields, when known (for progress bars)."""
        batches = self.train_batches(epoch)
        return len(batches) if hasattr(batches, "__len__") else None  # type: ignore[arg-type]


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def move_to(batch: Any, device: torch.device) -> Any:
    """Moves tensors nested in tuples, lists and dicts to ``device``."""
    if isinstance(batch, torch.Tensor):
        if device.type == "cuda" and batch.device.type == "cpu":  # page-locked, so the copy runs asynchronously
            batch = batch.pin_memory()
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


@torch.no_grad()
def classification_metrics(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    """Mean cross-entropy, accuracy and error (%) of ``model`` over (inputs, labels) batches: the classifiers' metrics."""
    device = model_device(model)
    # sums kept on the device and read once at the end: the host never waits inside the loop
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct, count = torch.zeros((), dtype=torch.int64, device=device), 0
    for inputs, labels in batches:
        inputs, labels = move_to(inputs, device), move_to(labels, device)
        logits = model(inputs)
        total_loss += nn.functional.cross_entropy(logits.float(), labels, reduction="sum")
        correct += (logits.argmax(-1) == labels).sum()
        count += len(labels)
    total_loss, correct = float(total_loss), int(correct)
    return {"loss": total_loss / count, "accuracy": 100.0 * correct / count, "error": 100.0 * (count - correct) / count}
