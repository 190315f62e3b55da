"""Issue 21: a results tree nobody can silently pollute. Each test runs the real CLI in subprocesses on real data."""
import json
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, only_record, records_under, run_cli, wait_for

SMALL = ("task.train_size=600", "task.valid_size=300", "task.test_size=300", "trainer.max_epochs=1",
         "trainer.progress=false")
LONG = ("task.train_size=3000", "task.valid_size=300", "task.test_size=300", "trainer.max_epochs=3",
        "trainer.checkpoint_every_steps=4", "trainer.progress=false")


def start(*overrides, **kwargs):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "normexp.cli.train", *overrides], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)




def test_row2_a_source_file_changed_after_the_cache_was_built_fails_naming_it(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    shutil.copytree(Path(os.environ["NORMEXP_DATA_ROOT"]) / "rt_polarity", data / "rt_polarity")
    env = {"NORMEXP_DATA_ROOT": str(data), "NORMEXP_CACHE_DIR": str(cache)}
    args = ("experiment=tiny/rt", "trainer.max_steps=2", "trainer.progress=false", f"out_root={tmp_path / 'out'}")
    run_cli(*args, "seed=1", env=env)  # builds the processed cache
    first = only_record(tmp_path / "out")
    assert first["data"]["files"]["rt_polarity/rt-polarity.pos"].startswith("d79ef140")
    pos = data / "rt_polarity" / "rt-polarity.pos"
    pos.write_bytes(pos.read_bytes()[:-5000])  # truncated
    proc = run_cli(*args, "seed=2", env=env, check=False)
    assert proc.returncode == 1
    assert "rt-polarity.pos has the wrong checksum" in proc.stderr
    failed = next(r for r in records_under(tmp_path / "out") if r["seed"] == 2)
    assert failed["status"] == "failed" and not failed["data"], "no checksum stated for the changed file"


def test_row3_a_run_dir_is_owned_by_one_live_process(tmp_path):
    args = (*LONG, f"out_root={tmp_path}")
    first = start(*args)
    try:
        wait_for(tmp_path, "checkpoints/step-00000004.pt", first)
        second = run_cli(*args, check=False, timeout=120)
        assert second.returncode == 1 and first.poll() is None
        assert f"already running (pid {first.pid})" in second.stderr and second.stderr.count("\n") == 1
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert only_record(tmp_path)["status"] == "running"
    third = run_cli(*args)  # a killed owner leaves no stale lock: the same command resumes and finishes
    assert "resumed from step" in third.stdout + third.stderr and only_record(tmp_path)["status"] == "completed"


def test_row4_sigint_checkpoints_records_interrupted_exits_130_and_the_rerun_resumes(tmp_path):
    args = (*LONG, "trainer.max_epochs=2", f"out_root={tmp_path}")
    proc = start(*args)
    wait_for(tmp_path, "checkpoints/step-00000004.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    line = err.strip().splitlines()[-1]
    assert "SIGINT at step" in line and "checkpoint written, rerun the same command to resume" in line
    step = int(line.split("SIGINT at step ")[1].split(":")[0])
    record = only_record(tmp_path)
    assert record["status"] == "interrupted" and list(tmp_path.rglob(f"step-{step:08d}.pt"))
    rerun = run_cli(*args)
    assert f"resumed from step {step}" in rerun.stdout + rerun.stderr
    assert only_record(tmp_path)["status"] == "completed"


def test_row6_and_row9_restart_keeps_the_old_run_aside_epochs_from_1_no_bar_files_group_readable(tmp_path):
    old_umask = os.umask(0o022)
    try:
        args = ("task.train_size=600", "task.valid_size=300", "task.test_size=300", "trainer.max_epochs=2",
                f"out_root={tmp_path}")  # progress left at its default: no terminal here, so no bar
        first = run_cli(*args)
        again = run_cli(*args, "trainer.resume=restart")
    finally:
        os.umask(old_umask)
    assert "epoch 1/2" not in first.stderr + again.stderr, "no progress bar in redirected output"
    [old] = list(tmp_path.rglob("previous-*/run.json"))
    assert "previous run" in again.stdout + again.stderr and str(old.parent) in again.stdout + again.stderr
    from normexp.records import find_records

    [(_, found)] = list(find_records(tmp_path))  # the old record is set aside, not a second result
    record = json.loads((_ / "run.json").read_text())
    assert found.status == "completed" and json.loads(old.read_text())["status"] == "completed"
    assert [e["epoch"] for e in record["curves"]["train_loss"]] == [1, 2] and record["best_epoch"] in (1, 2)
    for path in tmp_path.rglob("*"):
        if path.is_file() and ".hydra" not in path.parts:
            assert path.stat().st_mode & stat.S_IRGRP, f"{path} is not group-readable"


def test_row7_and_row8_tables_per_profile_and_reproduce_help_dry_run(tmp_path):
    for profile in ("tiny", "full"):
        run_cli(*SMALL, f"profile={profile}", f"name={profile}", f"out_root={tmp_path}")
    table = ("table=adanorm_table1", f"root={tmp_path}", "plots=false")
    mixed = run_cli(*table, module="normexp.cli.table", check=False)
    assert mixed.returncode == 2 and "Traceback" not in mixed.stderr and mixed.stderr.count("\n") == 1
    assert "several profiles (full, tiny): choose one with profile=full or profile=tiny" in mixed.stderr
    for profile in ("tiny", "full"):
        run_cli(*table, f"profile={profile}", module="normexp.cli.table")
        md = (tmp_path / "tables" / profile / "adanorm_table1.md").read_text()
        assert f"[{profile} profile]" in md.splitlines()[0] and "(n=1)" in md
    assert not (tmp_path / "tables" / "adanorm_table1.md").exists()

    shown = run_cli("--help", module="normexp.cli.reproduce").stdout
    assert all(word in shown for word in ("adanorm_table3", "tiny", "full", "slurm", "joblib", "dry_run="))
    typo = run_cli("table=adanorm_tabel3", module="normexp.cli.reproduce", check=False)
    assert typo.returncode == 2 and typo.stderr.count("\n") == 1 and "choose one of adanorm_deen_released, adanorm_detach, adanorm_table1," in typo.stderr
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    dry = run_cli("table=adanorm_table1", "profile=tiny", "tasks=mnist", "seeds=1,2", f"out_root={tmp_path}",
                  "dry_run=true", *SMALL, module="normexp.cli.reproduce")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before, "a dry run writes nothing"
    command = next(line[2:] for line in dry.stdout.splitlines() if line.startswith("$ "))
    assert command.startswith(sys.executable + " -m normexp.cli.train -m ")
    assert "estimate: " in dry.stdout and "median measured wall time" in dry.stdout


def test_row9_wandb_offline_run_path_and_sync_hint_are_printed(tmp_path):
    proc = run_cli(*SMALL, "logger=wandb", f"out_root={tmp_path}", env={"WANDB_MODE": "offline"})
    out = proc.stdout + proc.stderr
    assert "W&B run saved offline in " in out and "wandb sync " in out
    folder = Path(out.split("wandb sync ")[1].split()[0])
    assert folder.is_dir() and folder.name.startswith("offline-run-") and list(folder.glob("*.wandb"))


def test_adversary_corrupt_checkpoint_falls_back_and_says_so(tmp_path):
    args = (*SMALL, "trainer.checkpoint_every_steps=1", f"out_root={tmp_path}")
    run_cli(*args)
    [record_path] = list(tmp_path.rglob("run.json"))
    record = json.loads(record_path.read_text())
    record["status"] = "interrupted"
    record_path.write_text(json.dumps(record))
    newest = sorted(tmp_path.rglob("checkpoints/step-*.pt"))[-1]
    newest.write_bytes(newest.read_bytes()[:1000])
    out = run_cli(*args)
    log = out.stdout + out.stderr
    assert f"checkpoint {newest} is unreadable" in log and "resumed from step" in log
    assert only_record(tmp_path)["status"] == "completed"


def test_adversary_a_hand_edited_record_is_named_in_one_line(tmp_path):
    run_cli(*SMALL, f"out_root={tmp_path}")
    [record] = list(tmp_path.rglob("run.json"))
    record.write_text('{"task": "mnist", "status": "completed",')  # edited by hand, cut short
    train = run_cli(*SMALL, f"out_root={tmp_path}", check=False)
    assert train.returncode == 1 and train.stderr.count("\n") == 1 and f"{record} is not a valid run record" in train.stderr
    table = run_cli("table=adanorm_table1", f"root={tmp_path}", module="normexp.cli.table", check=False)
    assert table.returncode == 2 and f"{record} is not a valid run record" in table.stderr


def _full_disk():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, as on a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_adversary_a_full_disk_while_checkpointing_fails_in_one_line_and_loses_nothing(tmp_path):
    args = (*SMALL, "trainer.checkpoint_every_steps=2", f"out_root={tmp_path}")
    proc = subprocess.run([sys.executable, "-m", "normexp.cli.train", *args], cwd=REPO, capture_output=True,
                          text=True, preexec_fn=_full_disk, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "could not write" in proc.stderr and "(is the disk full?)" in proc.stderr and "rerun the same" in proc.stderr
    assert only_record(tmp_path)["status"] == "failed"
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"], "no temp file left"
    run_cli(*args)  # space again: the same command finishes the run
    assert only_record(tmp_path)["status"] == "completed"


def test_adversary_a_sweep_killed_mid_launch_resumes_on_rerun(tmp_path):
    args = ("-m", *LONG, "trainer.max_epochs=1", "seed=1,2", f"out_root={tmp_path}")
    sweep = start(*args)
    wait_for(tmp_path, "mnist-layernorm-s1/**/checkpoints/step-00000004.pt", sweep)
    sweep.send_signal(signal.SIGKILL)
    sweep.wait()
    rerun = run_cli(*args)
    assert "resumed from step" in rerun.stdout + rerun.stderr
    assert "sweep: 2 jobs completed or diverged, 0 failed" in rerun.stdout
    assert sorted(r["status"] for r in records_under(tmp_path)) == ["completed", "completed"]
