"""What the training loop measures without making the host wait for the device.

``LossMeter`` keeps the training loss on the device: the epoch's sum of loss × units, a running mean for the progress
bar, and the first update whose loss was non-finite or above the ceiling (with that loss). The host reads them only
when it must anyway: at log steps, before validation and checkpoints, at epoch ends. So a diverged run is caught at
the latest ``trainer.log_every_steps`` updates after it diverged (every update when that is 0) and its record names
the update it diverged at; the updates in between ran on non-finite values and are discarded with the run.

``StepTimer`` times training steps: host wall-clock on CPU, CUDA events on GPU (the host runs ahead of the device, so
its clock would time kernel launches, not steps); the events are read at the same sync points.
"""
from __future__ import annotations

import time

import torch


class LossMeter:
    def __init__(self, device: torch.device, ceiling: float, epoch_loss_sum: float = 0.0):
        kw = dict(dtype=torch.float64, device=device)
        self.ceiling = ceiling
        self.epoch_loss_sum = torch.tensor(epoch_loss_sum, **kw)
        self.running = torch.full((), float("nan"), **kw)  # nan: no update yet
        self.bad_step = torch.zeros((), dtype=torch.int64, device=device)  # 0: none
        self.bad_value = torch.zeros((), **kw)

    def add(self, value: torch.Tensor, units, step: int) -> None:
        """One update's mean loss (a float64 device scalar) over ``units`` units; ``step`` counts from 1."""
        self.epoch_loss_sum += value * units
        self.running = torch.where(self.running.isnan(), value, 0.98 * self.running + 0.02 * value)
        bad = (~value.isfinite() | (value > self.ceiling)) & (self.bad_step == 0)
        self.bad_step = torch.where(bad, step, self.bad_step)
        self.bad_value = torch.where(bad, value, self.bad_value)

    def divergence(self) -> tuple[int, float] | None:
        """(update, loss) of the first bad update, or None (one host read)."""
        step = int(self.bad_step)
        return (step, float(self.bad_value)) if step else None


class StepTimer:
    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pending: list = []  # CUDA: (start, end) event pairs not read yet
        self.seconds = 0.0  # CPU: time of the steps not drained yet
        self._start = None

    def start(self) -> None:
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def stop(self) -> None:
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self.pending.append((self._start, end))
        else:
            self.seconds += time.perf_counter() - self._start

    def drain(self) -> float:
        """Seconds of the steps timed since the last drain."""
        if self.pending:
            self.pending[-1][1].synchronize()
            self.seconds += sum(start.elapsed_time(end) for start, end in self.pending) / 1000.0
            self.pending.clear()
        seconds, self.seconds = self.seconds, 0.0
        return seconds
