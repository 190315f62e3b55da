"""One command per table: a real tiny sweep through the script, resumed once; submitit's local executor."""
from omegaconf import OmegaConf

from tests.conftest import records_under, run_cli

TINY = ("task.train_size=600", "task.valid_size=300", "task.test_size=300", "trainer.max_epochs=1",
        "trainer.progress=false")


def test_sweep_builds_the_table_and_a_rerun_launches_nothing(tmp_path):
    args = ("table=adanorm_table1", "profile=tiny", "tasks=mnist", "norms=layernorm,none", "seeds=1,2",
            f"out_root={tmp_path}", *TINY)
    first = run_cli(*args, module="normexp.cli.reproduce")
    assert "4 runs, 0 already finished, 4 to launch" in first.stdout
    records = records_under(tmp_path)
    assert sorted((r["norm"], r["seed"], r["profile"]) for r in records) == [
        ("layernorm", 1, "tiny"), ("layernorm", 2, "tiny"), ("none", 1, "tiny"), ("none", 2, "tiny")]
    assert all(r["status"] == "completed" and r["config"]["logger"]["group"] == "adanorm_table1" for r in records)
    md = (tmp_path / "tables" / "tiny" / "adanorm_table1.md").read_text()
    assert md.count("(n=2)") == 2 and md in first.stdout
    stamps = sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("run.json"))

    second = run_cli(*args, module="normexp.cli.reproduce")
    assert "4 runs, 4 already finished, 0 to launch" in second.stdout
    assert "$ " not in second.stdout, "nothing may be launched"
    assert sorted(p.stat().st_mtime_ns for p in tmp_path.rglob("run.json")) == stamps


def test_submitit_local_launcher_really_launches(tmp_path):
    proc = run_cli("table=adanorm_table1", "profile=tiny", "tasks=mnist", "norms=layernorm", "seeds=3",
                   "launcher=submitit_local", f"out_root={tmp_path}", *TINY, module="normexp.cli.reproduce")
    assert "hydra/launcher=submitit_local" in proc.stdout
    [record] = records_under(tmp_path)
    assert record["status"] == "completed" and record["seed"] == 3
    assert list(tmp_path.rglob(".submitit")), "submitit's own job folder exists: the job ran through it"


def test_every_tables_planned_runs_compose_in_both_profiles():
    """Each job normexp-reproduce would launch, for every table and profile, composes (a column's own presets and
    filters included) and lands in its column: a table whose runs cannot start is caught here, not on a cluster."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from normexp.cli.config import register_configs
    from normexp.cli.reproduce import load_table, plan
    from normexp.records import RunRecord
    from tests.conftest import REPO

    register_configs()
    tables = sorted(p.stem for p in (REPO / "conf/table").glob("*.yaml"))
    assert "ln_paper_batch_size" in tables
    for table in tables:
        spec = load_table(table)
        for profile in ("tiny", "full"):
            jobs = plan(spec, profile, [1], None, None)
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
                for job in {(j.experiment, j.where, j.row): j for j in jobs}.values():
                    overrides = [f"experiment={job.experiment}", f"norm={job.norm}", *[f"{k}={v}" for k, v in job.where],
                                 *[f"{k}={v}" for k, v in job.row]]
                    cfg = compose("config", overrides=overrides)
                    assert cfg.profile == profile, (table, overrides)
                    record = RunRecord(task=cfg.task.name, model=cfg.model.name, norm=job.norm, seed=1, name=cfg.name,
                                       profile=cfg.profile, config=OmegaConf.to_container(cfg, resolve=True))
                    assert sum(c.matches(record) for c in spec.columns) == 1, (table, overrides)
                    assert any(r.matches(record) for r in spec.rows), (table, overrides)
    GlobalHydra.instance().clear()


def test_tasks_selects_columns_by_task_label_or_key():
    from normexp.cli.reproduce import load_table, plan

    spec = load_table("ln_paper_batch_size")
    batches = lambda tasks: sorted({dict(j.where)["task.batch_size"] for j in plan(spec, "tiny", [1], tasks, None)})  # noqa: E731
    assert batches(["mnist"]) == ["1", "128", "4"]
    assert batches(["B=128", "B=4"]) == ["128", "4"]
    assert batches([spec.columns[2].key]) == ["1"]


def test_a_column_takes_only_its_own_experiments_records():
    """The re-centring sweep's centre-0 runs pass every filter of the batch-size table's B=128 column; their
    experiment name keeps them out of it, so the two sweeps can share one out_root."""
    from normexp.cli.reproduce import load_table
    from normexp.records import RunRecord

    column = load_table("ln_paper_batch_size").columns[0]
    config = {"task": {"batch_size": 128, "permute_pixels": True}, "model": {"name": "mlp", "weight_init_mean": 0.0}}
    record = lambda name: RunRecord(task="mnist", model="mlp", norm="layernorm", seed=1, name=name,  # noqa: E731
                                    profile="tiny", config=config)
    assert column.matches(record("tiny")) and not column.matches(record("tiny_recentre"))


def test_a_finished_run_counts_only_for_the_overrides_it_ran_with():
    from normexp.cli.reproduce import set_by
    from normexp.records import RunRecord

    record = RunRecord(task="mnist", model="cnn", norm="layernorm", seed=1, name="tiny", profile="tiny",
                       config={"trainer": {"grad_stats": False, "max_epochs": 2}, "optim": {"lr": 0.001}})
    assert set_by([], record)
    assert set_by(["trainer.max_epochs=2", "optim.lr=1e-3", "trainer.grad_stats=false"], record)
    assert not set_by(["trainer.grad_stats=true"], record), "another value: another sweep"
    assert set_by(["hydra.launcher.n_jobs=2"], record), "how many jobs run at once changes no result"
    assert not set_by(["trainer.no_such_key=1"], record)
    assert not set_by(["optim=sgd"], record), "a group choice cannot be checked: launch, the trainer skips it if done"


def test_a_grid_row_runs_every_value_then_more_seeds_at_the_one_chosen_on_valid(tmp_path):
    """Table 3's AdaNorm row runs C ∈ {0.5, 1, 2}; the table reports test at the C with the best valid accuracy, and
    grid=chosen launches the next seeds at that C only."""
    args = ("table=adanorm_table3", "profile=tiny", "tasks=mnist", "norms=adanorm", f"out_root={tmp_path}", *TINY)
    first = run_cli(*args, "seeds=1", "plots=false", module="normexp.cli.reproduce")
    assert "3 runs, 0 already finished, 3 to launch" in first.stdout
    records = records_under(tmp_path)
    assert sorted(r["extra"]["norm"]["C"] for r in records) == [0.5, 1.0, 2.0]
    best = max(records, key=lambda r: r["best_valid"]["accuracy"])  # a tie goes to the first value listed
    best = min((r for r in records if r["best_valid"]["accuracy"] == best["best_valid"]["accuracy"]),
               key=lambda r: r["extra"]["norm"]["C"])
    chosen = f"{best['extra']['norm']['C']:g}"
    md = (tmp_path / "tables" / "tiny" / "adanorm_table3.md").read_text()
    assert f"{best['test']['accuracy']:.2f} (n=1) [C = {chosen}] / 99.35" in md
    second = run_cli(*args, "seeds=2", "grid=chosen", "dry_run=true", "plots=false", module="normexp.cli.reproduce")
    assert "1 runs, 0 already finished, 1 to launch" in second.stdout
    assert f"norm.C={chosen} " in second.stdout  # as the grid lists it
