"""The one loop on a small synthetic regression task: divergence, grad statistics, checkpoint averaging, gradient
accumulation (update_freq)."""
import math

import pytest
import torch
from torch import nn

from normexp.cli.config import OptimConfig, TrainerConfig
from normexp.norms import build_norm
from normexp.records import RunRecord
from normexp.engine.loggers import ConsoleLogger
from normexp.tasks.base import Task
from normexp.tasks.batching import ShuffledBatches
from normexp.engine.trainer import Trainer


class Killed(Exception):
    """Stands for a process killed mid-run (the loop does not catch it)."""


class Regression(Task):
    """y = w·x + noise; a two-layer net with one norm site."""

    primary_metric, higher_is_better = "loss", False

    def __init__(self, nan_at_step: int | None = None, batch_size: int = 32, crash_at_call: int | None = None):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(512, 16, generator=g)
        self.y = self.x @ torch.randn(16, 1, generator=g) + 0.1 * torch.randn(512, 1, generator=g)
        self.nan_at_step, self.crash_at_call, self.calls, self.batch_size = nan_at_step, crash_at_call, 0, batch_size

    def build_model(self, norm):
        return nn.Sequential(nn.Linear(16, 32), norm(32), nn.ReLU(), nn.Linear(32, 1))

    def train_batches(self, epoch):
        return ShuffledBatches((self.x[:384], self.y[:384]), self.batch_size, seed=1, epoch=epoch)

    def loss(self, model, batch):
        self.calls += 1
        if self.calls == self.crash_at_call:
            raise Killed(f"killed at loss call {self.calls}")
        loss = nn.functional.mse_loss(model(batch[0]), batch[1])
        return (loss * math.nan if self.calls == self.nan_at_step else loss), len(batch[0])

    def evaluate(self, model, split):
        rows = slice(384, 448) if split == "valid" else slice(448, 512)
        return {"loss": nn.functional.mse_loss(model(self.x[rows]), self.y[rows]).item()}


def make(tmp_path, norm="layernorm", task=None, **trainer):
    torch.manual_seed(0)
    task = task or Regression()
    sites = []
    model = task.build_model(lambda d: sites.append(build_norm(norm, d)) or sites[-1])
    record = RunRecord(task="regression", model="mlp", norm=norm, seed=1, name="t", profile="tiny", config={})
    cfg = TrainerConfig(**{"max_epochs": 3, "progress": False, **trainer})
    return Trainer(task, model, OptimConfig(lr=1e-2), cfg, tmp_path, record, ConsoleLogger(), sites)


def test_training_lowers_valid_loss(tmp_path):
    record = make(tmp_path).fit()
    valid = [v["loss"] for v in record.curves["valid"]]
    assert record.status == "completed" and valid[-1] < valid[0] and record.steps == 36


def test_non_finite_loss_marks_the_run_diverged_at_its_step(tmp_path):
    record = make(tmp_path, task=Regression(nan_at_step=5)).fit()
    assert record.status == "diverged" and record.diverged_at_step == 5 and record.test == {}
    assert (tmp_path / "run.json").is_file()


def test_grad_stats_show_the_recentring_of_layernorm_simple(tmp_path):
    """docs/papers.md §1.3: with LayerNorm-simple, ∂ℓ/∂x has zero mean; without a norm it does not."""
    stats = {}
    for norm in ("layernorm_simple", "none"):
        record = make(tmp_path / norm, norm=norm, grad_stats=True, log_every_steps=5).fit()
        rows = record.extra["grad_stats"]
        assert [r["step"] for r in rows] == list(range(1, 37, 5))
        stats[norm] = [site for r in rows for site in r["sites"].values()]
        assert all(list(r["sites"]) == ["1"] for r in rows)  # the module path of the one norm site
    assert max(abs(s["mean"]) for s in stats["layernorm_simple"]) < 1e-6
    assert max(abs(s["mean"]) for s in stats["none"]) > 1e-4
    assert all(s["var"] > 0 for s in stats["none"] + stats["layernorm_simple"])


def test_average_last_tests_the_mean_of_the_last_checkpoints(tmp_path):
    trainer = make(tmp_path, average_last=2, max_epochs=3)
    record = trainer.fit()
    states = trainer.checkpoints.last_states(2)
    assert [s["progress"]["step"] for s in states] == [24, 36]
    assert record.extra["tested"] == "average of the last 2 checkpoints (steps 24, 36)"
    expected = (states[0]["model"]["0.weight"] + states[1]["model"]["0.weight"]) / 2
    assert torch.allclose(trainer.model.state_dict()["0.weight"], expected)


def test_invalid_optimizer_settings_are_refused_before_training(tmp_path):
    task = Regression()
    model = task.build_model(lambda d: build_norm("layernorm", d))
    record = RunRecord(task="r", model="m", norm="layernorm", seed=1, name="t", profile="tiny", config={})
    with pytest.raises(ValueError, match=r"optim.lr=-0.1 must be > 0"):
        Trainer(task, model, OptimConfig(lr=-0.1), TrainerConfig(), tmp_path, record, ConsoleLogger())


def test_update_freq_2_at_batch_b_is_update_freq_1_at_batch_2b(tmp_path):
    """fairseq's --update-freq: one update from the summed loss of consecutive batches over their summed units."""
    single = make(tmp_path / "2b", task=Regression(batch_size=64))
    accumulated = make(tmp_path / "b", task=Regression(batch_size=32), update_freq=2)
    assert single.total_steps == accumulated.total_steps == 18
    a, b = single.fit(), accumulated.fit()
    assert a.steps == b.steps == 18 and a.status == b.status == "completed"
    for p, q in zip(single.model.parameters(), accumulated.model.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-5)
    for x, y in zip(a.curves["train_loss"], b.curves["train_loss"]):
        assert x["step"] == y["step"] and math.isclose(x["loss"], y["loss"], rel_tol=1e-5)


def test_a_trailing_partial_group_is_an_update(tmp_path):
    trainer = make(tmp_path, update_freq=5)  # 12 batches an epoch: groups of 5, 5 and 2
    assert trainer.total_steps == 9
    record = trainer.fit()
    assert record.steps == 9 and trainer.progress.units == 3 * 384
    assert [c["step"] for c in record.curves["train_loss"]] == [3, 6, 9]


def test_resume_mid_epoch_with_update_freq(tmp_path):
    straight = make(tmp_path / "straight", update_freq=2, checkpoint_every_steps=2).fit()
    crashing = make(tmp_path / "killed", task=Regression(crash_at_call=17), update_freq=2, checkpoint_every_steps=2)
    with pytest.raises(Killed):  # the first batch of step 9: mid epoch 2, one update after the step-8 checkpoint
        crashing.fit()
    resumed = make(tmp_path / "killed", update_freq=2, checkpoint_every_steps=2)
    assert resumed.resume() and (resumed.progress.step, resumed.progress.epoch, resumed.progress.batch) == (8, 1, 4)
    record = resumed.fit()
    assert record.status == "completed" and record.steps == 18
    assert record.curves == straight.curves and record.test == straight.test  # bitwise


def test_update_freq_below_1_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"trainer.update_freq=0 must be >= 1"):
        make(tmp_path, update_freq=0)
