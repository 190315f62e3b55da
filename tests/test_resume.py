"""Killed runs resume to the same result; SIGTERM checkpoints first; same config and seed → same metrics."""
import json
import os
import signal
import subprocess
import sys

from tests.conftest import REPO, only_record, run_cli, wait_for

RUN = ("task.train_size=3000", "task.valid_size=500", "task.test_size=500", "trainer.max_epochs=2",
       "trainer.checkpoint_every_steps=4", "trainer.deterministic=true", "trainer.progress=false",
       "trainer.grad_stats=true", "trainer.log_every_steps=5")


def start(out_root, run=RUN):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "normexp.cli.train", *run, f"out_root={out_root}"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)




def finish(root):
    proc = run_cli(*RUN, f"out_root={root}")
    return proc.stdout + proc.stderr


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path):
    run_cli(*RUN, f"out_root={tmp_path / 'straight'}")
    straight = only_record(tmp_path / "straight")

    proc = start(tmp_path / "killed")
    wait_for(tmp_path / "killed", "checkpoints/step-00000012.pt", proc)  # epoch 1 has 24 steps: mid-epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert only_record(tmp_path / "killed")["status"] == "running"
    log = finish(tmp_path / "killed")
    assert "resumed from step" in log
    resumed = only_record(tmp_path / "killed")
    assert resumed["status"] == "completed"
    assert resumed["test"] == straight["test"] and resumed["best_valid"] == straight["best_valid"]
    assert resumed["curves"] == straight["curves"]  # bitwise: every loss of every epoch
    # the gradient statistics of the steps before the kill come back from the checkpoint
    assert len(straight["extra"]["grad_stats"]) == 10 and resumed["extra"]["grad_stats"] == straight["extra"]["grad_stats"]


def test_sigterm_checkpoints_first_then_resumes(tmp_path):
    run_cli(*RUN, f"out_root={tmp_path / 'straight'}")
    straight = only_record(tmp_path / "straight")
    proc = start(tmp_path / "term")
    wait_for(tmp_path / "term", "checkpoints/step-00000004.pt", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143
    rec = only_record(tmp_path / "term")
    assert rec["status"] == "interrupted" and "rerun the same command to resume" in rec["error"]
    steps = sorted(p.name for p in (tmp_path / "term").rglob("step-*.pt"))
    assert steps[-1] == f"step-{rec['steps']:08d}.pt", "the checkpoint is written at the step where SIGTERM landed"
    finish(tmp_path / "term")
    resumed = only_record(tmp_path / "term")
    assert resumed["status"] == "completed" and resumed["curves"] == straight["curves"]
    assert resumed["test"] == straight["test"]


def test_same_config_and_seed_give_the_same_metrics(tmp_path):
    for name in ("a", "b"):
        run_cli(*RUN[:4], "trainer.progress=false", "trainer.deterministic=true", f"out_root={tmp_path / name}")
    a, b = only_record(tmp_path / "a"), only_record(tmp_path / "b")
    assert a["test"] == b["test"] and a["curves"] == b["curves"]
    run_cli(*RUN[:4], "trainer.progress=false", "seed=2", f"out_root={tmp_path / 'c'}")
    assert only_record(tmp_path / "c")["curves"] != a["curves"], "another seed is another run"
