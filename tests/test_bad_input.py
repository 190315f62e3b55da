"""Bad input is refused before any training with a message naming the problem and the fix; faults are recorded."""
import multiprocessing as mp
import shutil
import time

import pytest

from tests.conftest import SHARED_DATA, only_record, records_under, run_cli

SMALL = ("task.train_size=600", "task.valid_size=300", "task.test_size=300", "trainer.max_epochs=1",
         "trainer.progress=false")


@pytest.mark.parametrize("overrides, message", [
    (("norm=prmsnorm", "norm.p=1.5"), "p must be in (0, 1], got 1.5"),
    (("norm=adanorm", "norm.C=0"), "C and k must be > 0, got C=0.0"),
    (("norm=adanorm", "norm.k=-0.1"), "C and k must be > 0, got C=1.0, k=-0.1"),
    (("optim.lr=-0.1",), "optim.lr=-0.1 must be > 0"),
])
def test_invalid_values_fail_before_training(tmp_path, overrides, message):
    proc = run_cli(*SMALL, *overrides, f"out_root={tmp_path}", check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-3000:]
    rec = only_record(tmp_path)
    assert rec["status"] == "failed" and message in rec["error"] and rec["steps"] == 0


def test_unwritable_output_folder_is_refused_first(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli(*SMALL, f"out_root={blocker / 'runs'}", check=False)
    assert proc.returncode == 2
    assert f"cannot write the output folder {blocker}" in proc.stderr and "out_root=<writable folder>" in proc.stderr


def test_corrupt_data_names_the_file_and_the_fix(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(SHARED_DATA / "mnist", root / "mnist")
    labels = root / "mnist" / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-100])  # truncated
    proc = run_cli(*SMALL, f"out_root={tmp_path / 'out'}", env={"NORMEXP_DATA_ROOT": str(root)}, check=False)
    assert proc.returncode != 0
    assert "train-labels-idx1-ubyte.gz" in proc.stderr and "Delete it and run again" in proc.stderr


def test_a_failed_job_does_not_stop_the_sweep_and_shows_as_failed(tmp_path):
    run_cli("-m", *SMALL, "task.valid_size=0,300", f"out_root={tmp_path}")  # valid_size=0 is refused by the task
    statuses = sorted(r["status"] for r in records_under(tmp_path))
    assert statuses == ["completed", "failed"]
    failed = next(r for r in records_under(tmp_path) if r["status"] == "failed")
    assert "task.valid_size=0 must be between 1 and 59999" in failed["error"]
    run_cli("table=adanorm_table1", f"root={tmp_path}", module="normexp.cli.table")
    md = (tmp_path / "tables" / "adanorm_table1.md").read_text()
    assert "(n=1) [+1 failed]" in md


def _fill_cache(cache_dir, queue):
    import os

    os.environ["NORMEXP_CACHE_DIR"] = cache_dir
    from normexp.tasks.files import cached

    def slow_build():
        time.sleep(0.5)  # every process is inside the build at the same time
        return {"value": list(range(100_000))}

    queue.put(len(cached("shared", {"k": 1}, slow_build)["value"]))


def test_parallel_processes_filling_one_cache_leave_one_whole_file(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_fill_cache, args=(str(tmp_path), queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert sorted(queue.get() for _ in procs) == [100_000] * 4
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.iterdir()).name]  # one file, no temp files
    assert next(tmp_path.iterdir()).name.startswith("shared-")


def test_a_failed_build_leaves_no_cache_file(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMEXP_CACHE_DIR", str(tmp_path))
    from normexp.tasks.files import cached

    def broken():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        cached("x", {"k": 2}, broken)
    assert not list(tmp_path.iterdir())


def test_parallel_jobs_write_every_record(tmp_path):
    run_cli("-m", *SMALL, "seed=1,2,3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=3", f"out_root={tmp_path}")
    records = records_under(tmp_path)
    assert sorted(r["seed"] for r in records) == [1, 2, 3] and all(r["status"] == "completed" for r in records)
    assert not list(tmp_path.rglob("*.tmp")), "no temp file is left behind"
