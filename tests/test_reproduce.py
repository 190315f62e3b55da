"""One command per table: a real tiny sweep through the script, resumed once; submitit's local executor."""
from tests.conftest import records_under, run_cli

TINY = ("task.train_size=600", "task.valid_size=300", "task.test_size=300", "trainer.max_epochs=1",
        "trainer.progress=false")


def test_sweep_builds_the_table_and_a_rerun_launches_nothing(tmp_path):
    args = ("table=adanorm_table1", "profile=tiny", "tasks=mnist", "norms=layernorm,none", "seeds=1,2",
            f"out_root={tmp_path}", *TINY)
    first = run_cli(*args, module="normexp.reproduce")
    assert "4 runs, 0 already finished, 4 to launch" in first.stdout
    records = records_under(tmp_path)
    assert sorted((r["norm"], r["seed"], r["profile"]) for r in records) == [
        ("layernorm", 1, "tiny"), ("layernorm", 2, "tiny"), ("none", 1, "tiny"), ("none", 2, "tiny")]
    assert all(r["status"] == "completed" and r["config"]["logger"]["group"] == "adanorm_table1" for r in records)
    md = (tmp_path / "tables" / "tiny" / "adanorm_table1.md").read_text()
    assert md.count("(n=2)") == 2 and md in first.stdout
    stamps = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("run.json"))

    second = run_cli(*args, module="normexp.reproduce")
    assert "4 runs, 4 already finished, 0 to launch" in second.stdout
    assert "$ " not in second.stdout, "nothing may be launched"
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("run.json")) == stamps


def test_submitit_local_launcher_really_launches(tmp_path):
    proc = run_cli("table=adanorm_table1", "profile=tiny", "tasks=mnist", "norms=layernorm", "seeds=3",
                   "launcher=submitit_local", f"out_root={tmp_path}", *TINY, module="normexp.reproduce")
    assert "hydra/launcher=submitit_local" in proc.stdout
    [record] = records_under(tmp_path)
    assert record["status"] == "completed" and record["seed"] == 3
    assert list(tmp_path.rglob(".submitit")), "submitit's own job folder exists: the job ran through it"
