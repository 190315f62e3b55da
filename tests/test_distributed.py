"""DDP under torchrun (gloo, 2 CPU processes) ends where one process with the same global batch ends."""
import os
import subprocess
import sys

from tests.conftest import REPO, only_record, records_under, run_cli

RUN = ("task.train_size=1024", "task.valid_size=500", "task.test_size=500", "trainer.max_epochs=1",
       "model.dropout=0.0", "trainer.progress=false")  # no dropout: the RNG streams of 1 and 2 processes differ


def run_ddp(*overrides: str, port: int) -> None:
    """``torchrun --nproc_per_node=2 normexp.cli.train`` with RUN and ``overrides`` (gloo, one thread per rank)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                           "-m", "normexp.cli.train", *RUN, *overrides], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    run_cli(*RUN, "task.batch_size=128", f"hydra.run.dir={tmp_path / 'single'}")
    run_ddp("task.batch_size=64", f"hydra.run.dir={tmp_path / 'ddp'}", port=29517)
    single, ddp = only_record(tmp_path / "single"), only_record(tmp_path / "ddp")
    assert ddp["extra"]["world_size"] == 2 and single["extra"]["world_size"] == 1
    assert ddp["steps"] == single["steps"] == 8
    assert abs(ddp["best_valid"]["loss"] - single["best_valid"]["loss"]) < 1e-3 * single["best_valid"]["loss"]
    assert abs(ddp["test"]["loss"] - single["test"]["loss"]) < 1e-3 * single["test"]["loss"]


def test_torchrun_runs_a_hydra_multirun_with_every_job_on_both_ranks(tmp_path):
    """``torchrun ... normexp.cli.train -m a,b``: each rank runs the sweep's jobs in the same order, the process group
    is set up once and serves every job; rank 0 writes each job's record."""
    run_ddp("norm=layernorm,rmsnorm", "task.batch_size=64", f"out_root={tmp_path}", "-m", port=29521)
    records = records_under(tmp_path)
    assert sorted(r["norm"] for r in records) == ["layernorm", "rmsnorm"]
    assert all(r["status"] == "completed" and r["extra"]["world_size"] == 2 and r["steps"] == 8 for r in records)
