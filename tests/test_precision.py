"""trainer.precision: bf16 and fp16 (with its GradScaler) train to where fp32 trains; fp16 resumes bit for bit; the
norms compute their statistics in float32 under autocast."""
import signal

import pytest
import torch

from normexp.norms import build_norm
from tests.conftest import only_record, run_cli
from tests.test_resume import start, wait_for

# a small MLP: float16 convolutions on a CPU without fp16 arithmetic are emulated and slow
MODEL = ("model=mlp", "model.hidden=[64,64]")
RUN = ("experiment=tiny/mnist", *MODEL, "task.train_size=1024", "task.valid_size=500", "task.test_size=500",
       "trainer.max_epochs=1", "trainer.progress=false", "trainer.threads=1")


def test_bf16_and_fp16_land_near_fp32(tmp_path):
    losses = {}
    for precision in ("fp32", "bf16", "fp16"):
        run_cli(*RUN, f"trainer.precision={precision}", f"out_root={tmp_path / precision}")
        record = only_record(tmp_path / precision)
        assert record["status"] == "completed" and record["config"]["trainer"]["precision"] == precision
        assert record["extra"]["precision"] == precision
        losses[precision] = record["test"]["loss"]
    assert losses["bf16"] != losses["fp32"] and losses["fp16"] != losses["fp32"]  # autocast did change the arithmetic
    for precision in ("bf16", "fp16"):
        assert abs(losses[precision] - losses["fp32"]) < 0.1 * losses["fp32"], losses


RESUME = (*MODEL, "task.train_size=3000", "task.valid_size=500", "task.test_size=500", "trainer.max_epochs=2",
          "trainer.checkpoint_every_steps=4", "trainer.deterministic=true", "trainer.progress=false",
          "trainer.log_every_steps=5", "trainer.precision=fp16")


def test_fp16_resume_mid_epoch_equals_uninterrupted(tmp_path):
    run_cli(*RESUME, f"out_root={tmp_path / 'straight'}")
    straight = only_record(tmp_path / "straight")
    proc = start(tmp_path / "killed", RESUME)
    wait_for(tmp_path / "killed", "checkpoints/step-00000012.pt", proc)  # epoch 1 has 24 steps: mid-epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert only_record(tmp_path / "killed")["status"] == "running"
    checkpoint = torch.load(sorted((tmp_path / "killed").rglob("step-*.pt"))[-1], weights_only=True)
    assert checkpoint["grad_scaler"]["scale"] > 0  # the scaler's state travels with the checkpoint
    run_cli(*RESUME, f"out_root={tmp_path / 'killed'}")
    resumed = only_record(tmp_path / "killed")
    assert resumed["status"] == "completed"
    assert resumed["curves"] == straight["curves"] and resumed["test"] == straight["test"]  # bitwise
    # the scaler continued where it stopped (a fresh one would count its growth interval from 0 again)
    last = [torch.load(sorted(root.rglob("step-*.pt"))[-1], weights_only=True)["grad_scaler"]
            for root in (tmp_path / "straight", tmp_path / "killed")]
    assert last[0] == last[1] and last[0]["_growth_tracker"] == 48


@pytest.mark.parametrize("name", ["layernorm", "layernorm_simple", "rmsnorm", "prmsnorm", "detachnorm", "adanorm",
                                  "batchnorm"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_norms_under_autocast_compute_their_statistics_in_float32(name, dtype):
    torch.manual_seed(0)
    norm = build_norm(name, 64)
    x = (torch.randn(32, 64) * 3 + 5).to(dtype)  # an offset mean: low-precision statistics would lose digits
    with torch.autocast("cpu", dtype=dtype):
        y = norm(x)
    expected = norm(x.float())  # the same low-precision input, computed in float32
    assert y.dtype == dtype
    torch.testing.assert_close(y, expected.to(dtype))
