"""The one training loop. It knows a task only through the ``Task`` protocol and writes everything to a ``RunRecord``.

Per update: loss and backward for each of ``update_freq`` consecutive batches (gradients accumulated, fairseq's
``--update-freq``) → clip → step → schedule, in ``trainer.precision`` (precision.py). The hot loop never waits for the
device: losses stay on it (meter.py) and are read, and divergence is checked, at log steps, validation, checkpoints
and epoch ends. Valid is evaluated each epoch (or every
``eval_every_steps``), the best weights are kept, and test is run once at the end on the best weights. Checkpoints
(``checkpoints.py``) make a killed run resumable; SIGTERM and SIGINT (Ctrl-C) checkpoint at that step before exiting
(a second Ctrl-C stops at once). Epochs are numbered from 1 wherever a user sees them (record, logs, W&B).
"""
from __future__ import annotations

import contextlib
import itertools
import math
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn
from tqdm import tqdm

from normexp.engine import distributed
from normexp.engine.checkpoints import CheckpointDir, average_model_states, rng_state, set_rng_state
from normexp.engine.grad_stats import GradStats
from normexp.engine.meter import LossMeter, StepTimer
from normexp.engine.optim import build_optimizer, build_scheduler
from normexp.engine.precision import Precision
from normexp.records import RunRecord
from normexp.tasks.base import Task, move_to


class Diverged(Exception):
    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step  # the update whose loss was bad


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived; a checkpoint was written and the run can be resumed. ``code``: the exit code a shell
    gives a process ended by that signal (143, 130)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


@dataclass
class Progress:
    """Where the loop stands, saved in every checkpoint."""

    epoch: int = 0  # current epoch, 0-based
    batch: int = 0  # batches already trained in the current epoch (this rank's; update_freq per update)
    step: int = 0  # updates done
    epoch_loss_sum: float = 0.0  # sum of batch losses x units in the current epoch
    epoch_units: int = 0
    units: int = 0  # units trained on, all epochs
    train_time_s: float = 0.0
    best_value: float | None = None


class Trainer:
    def __init__(self, task: Task, model: nn.Module, optim_cfg, cfg, run_dir: Path, record: RunRecord, logger,
                 norm_sites: list[nn.Module] | None = None):
        self.task, self.model, self.cfg, self.record, self.logger = task, model, cfg, record, logger
        self.run_dir = Path(run_dir)
        self.device = next(model.parameters()).device
        self.is_main, self.world = distributed.is_main(), distributed.world_size()
        if cfg.update_freq < 1:
            raise ValueError(f"trainer.update_freq={cfg.update_freq} must be >= 1")
        self.precision = Precision(cfg.precision, self.device)
        record.extra.update(precision=cfg.precision, compiled=cfg.compile)  # the speed table shows them
        # the model the loss runs through: DDP-wrapped under torchrun (gradients averaged), compiled if asked
        self.train_model = distributed.wrap(model, self.device)
        if cfg.compile:
            self.train_model = torch.compile(self.train_model)
        self.grad_stats = GradStats(model, norm_sites or []) if cfg.grad_stats else None
        self.optimizer = build_optimizer(model, optim_cfg)
        self.clip_norm = optim_cfg.clip_norm
        self.total_steps = self._total_steps()
        self.scheduler = build_scheduler(self.optimizer, optim_cfg, self.total_steps)
        self.checkpoints = CheckpointDir(self.run_dir, max(cfg.keep_checkpoints, cfg.average_last))
        self.progress = Progress()
        self._signal: int | None = None  # SIGTERM or SIGINT, once one arrived
        self.meter, self.timer = LossMeter(self.device, cfg.loss_ceiling), StepTimer(self.device)
        self._pending_stats: list[dict] = []  # grad-stats entries whose device values are not read yet

    def _total_steps(self) -> int:
        if self.cfg.max_steps > 0:
            return self.cfg.max_steps
        per_epoch = self.task.batches_per_epoch(0)
        # an epoch's trailing partial group of batches is an update too
        return self.cfg.max_epochs * -(-(per_epoch // self.world) // self.cfg.update_freq) if per_epoch else 0

    # ---- checkpoint state -------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "grad_scaler": self.precision.state_dict(),
            "progress": asdict(self.progress),
            "record": {k: getattr(self.record, k) for k in ("curves", "best_valid", "best_epoch", "best_step")},
            "grad_stats": self.record.extra.get("grad_stats"),  # trainer.grad_stats: the entries so far
            "logger": self.logger.resume_state(),
        }

    def resume(self) -> bool:
        state = self.checkpoints.latest()
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self.precision.load_state_dict(state.get("grad_scaler"))
        self.progress = Progress(**state["progress"])
        self.meter = LossMeter(self.device, self.cfg.loss_ceiling, self.progress.epoch_loss_sum)
        for key, value in state["record"].items():
            setattr(self.record, key, value)
        if state.get("grad_stats") is not None:
            self.record.extra["grad_stats"] = state["grad_stats"]
        return True

    def save_checkpoint(self) -> None:
        self.sync()
        if not self.is_main:
            return
        self.checkpoints.save(self.progress.step, self.state())
        self.flush_record()  # the record shows how far a run got, even if it is killed next

    # ---- evaluation -------------------------------------------------------------------------------------------------
    def evaluate(self, split: str) -> dict[str, float]:
        self.model.eval()
        try:
            with torch.no_grad(), self.precision.autocast():
                return self.task.evaluate(self.model, split)
        finally:
            self.model.train()

    def validate(self) -> None:
        self.sync()
        p, task = self.progress, self.task
        metrics = self.evaluate("valid")
        if task.primary_metric not in metrics:
            raise KeyError(f"task {type(task).__name__}.evaluate returned {sorted(metrics)}, not {task.primary_metric!r}")
        self.record.curves["valid"].append({"epoch": p.epoch + 1, "step": p.step, **metrics})
        self.logger.log({f"valid/{k}": v for k, v in metrics.items()}, step=p.step)
        value = metrics[task.primary_metric]
        better = p.best_value is None or (value > p.best_value if task.higher_is_better else value < p.best_value)
        if better and math.isfinite(value):
            p.best_value = value
            self.record.best_valid, self.record.best_epoch, self.record.best_step = metrics, p.epoch + 1, p.step
            if self.is_main:
                self.checkpoints.save_best(self.model.state_dict())
        self.flush_record()

    def flush_record(self) -> None:
        if not self.is_main:
            return
        p = self.progress
        self.record.steps, self.record.train_time_s = p.step, round(p.train_time_s, 3)
        if p.train_time_s > 0:
            self.record.steps_per_s = round(p.step / p.train_time_s, 3)
            self.record.units_per_s = round(p.units / p.train_time_s, 1)
        self.record.save(self.run_dir)

    # ---- the loop ---------------------------------------------------------------------------------------------------
    def train_step(self, group: list[Any]) -> None:
        """One update from ``group`` (``update_freq`` batches, fewer at an epoch's end), as fairseq's --update-freq:
        the gradient of the group's summed loss over its summed units. The group's mean loss goes to the meter."""
        p, stats = self.progress, None
        if self.grad_stats:
            self.grad_stats.start_step(record=p.step % max(self.cfg.log_every_steps, 1) == 0)
        self.optimizer.zero_grad(set_to_none=True)
        value, units = 0.0, 0
        for i, batch in enumerate(group):
            # under DDP only the group's last backward all-reduces (the accumulated gradients)
            last = i == len(group) - 1
            with contextlib.nullcontext() if last or self.world == 1 else self.train_model.no_sync():
                with self.precision.autocast():
                    loss, n = self.task.loss(self.train_model, move_to(batch, self.device))
                # A running mean: the gradient so far is that of the mean loss over `units` units; reweighting it and
                # this batch's loss keeps it the mean over all `units + n`. The first batch's weight is exactly 1, so
                # update_freq=1 runs the very operations it ran before accumulation existed.
                weight = n / (units + n) if units else 1.0
                if units:
                    grads = [q.grad for q in self.model.parameters() if q.grad is not None]
                    torch._foreach_mul_(grads, units / (units + n))
                self.precision.backward(loss if weight == 1.0 else loss * weight)
            value, units = value + (loss.detach().double() - value) * weight, units + n
            if self.grad_stats and i == 0:  # ∂ℓ/∂x of the first batch, whose gradient is not reweighted
                stats = self.grad_stats.collect(p.step + 1)
                self.grad_stats.start_step(record=False)
        if stats:
            self._pending_stats.append(stats)
        self.precision.step(self.optimizer, self.model.parameters(), self.clip_norm)
        self.scheduler.step()
        p.step += 1
        p.batch += len(group)
        p.units += units
        p.epoch_units += units
        self.meter.add(distributed.mean_across_ranks(value), units, p.step)

    def sync(self) -> None:
        """Reads what the device accumulated (the host waits here, and only here): raises Diverged for a bad loss,
        brings the epoch's loss sum, the step times and the gradient statistics into the progress and the record."""
        p = self.progress
        bad = self.meter.divergence()
        if bad is not None:
            step, loss = bad
            raise Diverged(f"training loss {loss} at step {step} (ceiling {self.cfg.loss_ceiling}), "
                           f"seen at step {p.step}", step)
        p.epoch_loss_sum = float(self.meter.epoch_loss_sum)
        p.train_time_s += self.timer.drain()
        if self._pending_stats:
            self.record.extra.setdefault("grad_stats", []).extend(GradStats.read(e) for e in self._pending_stats)
            self._pending_stats.clear()

    def done(self) -> bool:
        p, cfg = self.progress, self.cfg
        return (cfg.max_steps > 0 and p.step >= cfg.max_steps) or p.epoch >= cfg.max_epochs

    def fit(self) -> RunRecord:
        """Trains to the end (or to divergence), then tests the best weights. Returns the finished record."""
        cfg, p = self.cfg, self.progress
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} \
            if _main_thread() else {}
        self.model.train()
        try:
            while not self.done():
                self._run_epoch()
        except Diverged as e:
            self.record.status, self.record.diverged_at_step, self.record.error = "diverged", e.step, str(e)
            self.flush_record()
            return self.record
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not self.is_main:  # rank 0 tests and writes; the other ranks are done
            return self.record
        self.model.load_state_dict(self._test_weights())
        self.record.test = self.evaluate("test")
        self.logger.log({f"test/{k}": v for k, v in self.record.test.items()}, step=p.step)
        self.record.status = "completed"
        self.flush_record()
        return self.record

    def _test_weights(self) -> dict[str, torch.Tensor]:
        """The weights to test: the best on valid, or the average of the last ``average_last`` checkpoints."""
        if self.cfg.average_last > 0:
            states = self.checkpoints.last_states(self.cfg.average_last)
            self.record.extra["tested"] = f"average of the last {len(states)} checkpoints (steps " + \
                ", ".join(str(s["progress"]["step"]) for s in states) + ")"
            return average_model_states(states)
        self.record.extra["tested"] = f"best valid {self.task.primary_metric} (step {self.record.best_step})"
        best = self.checkpoints.load_best()
        return best if best is not None else self.model.state_dict()

    def _run_epoch(self) -> None:
        cfg, p, task = self.cfg, self.progress, self.task
        task.start_epoch(p.epoch)
        batches = task.train_batches(p.epoch)
        total = len(batches) // self.world if hasattr(batches, "__len__") else None
        batches = distributed.shard(batches, total * self.world if total is not None else None)
        # a resumed epoch skips the batches already trained on: a whole number of groups, checkpoints follow updates
        groups = _groups(itertools.islice(batches, p.batch, None), cfg.update_freq)
        bar = tqdm(groups, total=-(-total // cfg.update_freq) if total is not None else None,
                   initial=p.batch // cfg.update_freq, disable=not (cfg.progress and self.is_main and _on_terminal()),
                   desc=f"epoch {p.epoch + 1}/{cfg.max_epochs}", leave=False, dynamic_ncols=True)
        for group in bar:
            self.timer.start()
            self.train_step(group)
            self.timer.stop()
            if p.step % (cfg.log_every_steps or 1) == 0:  # log_every_steps=0: no logging, divergence checked per step
                self.sync()
                running = float(self.meter.running)
                bar.set_postfix(loss=f"{running:.4f}", refresh=False)
                if cfg.log_every_steps:
                    self.logger.log({"train/loss": running, "train/lr": self.scheduler.get_last_lr()[0],
                                     "train/steps_per_s": p.step / max(p.train_time_s, 1e-9)}, step=p.step)
            if cfg.eval_every_steps and p.step % cfg.eval_every_steps == 0:
                self.validate()
                self.save_checkpoint()
            elif cfg.checkpoint_every_steps and p.step % cfg.checkpoint_every_steps == 0:
                self.save_checkpoint()
            if self._signal is not None:
                self.save_checkpoint()
                name = signal.Signals(self._signal).name
                raise Interrupted(f"{name} at step {p.step}: checkpoint written, rerun the same command to resume",
                                  code=128 + self._signal)
            if cfg.max_steps and p.step >= cfg.max_steps:
                break
        bar.close()
        self._end_epoch()

    def _end_epoch(self) -> None:
        p, cfg = self.progress, self.cfg
        self.sync()
        train_loss = p.epoch_loss_sum / max(p.epoch_units, 1)
        self.record.curves["train_loss"].append({"epoch": p.epoch + 1, "step": p.step, "loss": train_loss})
        self.logger.log({"train/epoch_loss": train_loss, "epoch": p.epoch + 1}, step=p.step)
        if not cfg.eval_every_steps or self.done_after_epoch():
            self.validate()
        p.epoch += 1
        p.batch, p.epoch_loss_sum, p.epoch_units = 0, 0.0, 0
        self.meter.epoch_loss_sum.zero_()
        self.record.epochs_done = p.epoch
        self.save_checkpoint()

    def done_after_epoch(self) -> bool:
        """With step-based evaluation, still validate at the very end if the last step was not an evaluation step."""
        p, cfg = self.progress, self.cfg
        finishing = (cfg.max_steps and p.step >= cfg.max_steps) or p.epoch + 1 >= cfg.max_epochs
        return bool(finishing and p.step % cfg.eval_every_steps != 0)

    def _on_signal(self, signum, frame) -> None:  # noqa: ARG002
        """Asks the loop to checkpoint and stop after the current step; a second Ctrl-C stops at once."""
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self._signal = signum


def _groups(batches: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive groups of ``size`` batches, the last one possibly shorter."""
    while group := list(itertools.islice(batches, size)):
        yield group


def _on_terminal() -> bool:
    """The progress bar (on stderr) only where a person watches it: redirected logs get the logger's lines instead."""
    return sys.stderr.isatty()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
