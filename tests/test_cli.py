"""End to end through the real CLI: a run, its record, a multirun, a table, W&B offline, and the errors users see."""
import json

from tests.conftest import only_record, records_under, run_cli
from tests.wandb_files import read_offline_run

SMALL = ("task.train_size=600", "task.valid_size=300", "task.test_size=300", "trainer.max_epochs=1",
         "trainer.progress=false")


def test_a_run_writes_a_complete_record(tmp_path):
    run_cli(*SMALL, f"out_root={tmp_path}")
    rec = only_record(tmp_path)
    assert (rec["task"], rec["model"], rec["norm"], rec["seed"], rec["status"]) == ("mnist", "cnn", "layernorm", 1, "completed")
    assert rec["primary_metric"] == "accuracy" and rec["higher_is_better"] is True
    assert rec["test"]["accuracy"] > 40, "600 images and one epoch already beat chance (10%) by far"
    assert rec["best_valid"]["accuracy"] == rec["curves"]["valid"][rec["best_epoch"] - 1]["accuracy"]
    assert len(rec["curves"]["train_loss"]) == 1 and rec["steps"] == 5
    assert rec["config"]["optim"]["lr"] == 1e-3 and rec["config"]["task"]["train_size"] == 600
    assert rec["versions"]["torch"] and rec["wall_time_s"] > 0 and rec["steps_per_s"] > 0
    assert rec["data"]["sizes"] == {"train": 600, "valid": 300, "test": 300}
    assert rec["extra"]["device"] == "cpu" and rec["extra"]["cpu_allocator"]  # what normexp.engine.cpu_memory did
    assert rec["extra"]["norm_impls"] == {"fused_cpu": rec["extra"]["norm_sites"]}  # which kernel each norm site ran


def test_rerun_of_a_completed_run_does_nothing(tmp_path):
    run_cli(*SMALL, f"out_root={tmp_path}")
    before = only_record(tmp_path)
    proc = run_cli(*SMALL, f"out_root={tmp_path}")
    assert "already completed" in proc.stdout + proc.stderr
    assert only_record(tmp_path) == before


def test_multirun_then_table(tmp_path):
    run_cli("-m", *SMALL, "norm=layernorm,none", "seed=1,2", f"out_root={tmp_path}")
    records = records_under(tmp_path)
    assert sorted((r["norm"], r["seed"]) for r in records) == [("layernorm", 1), ("layernorm", 2), ("none", 1), ("none", 2)]
    assert all(r["status"] == "completed" for r in records)
    proc = run_cli("table=adanorm_table1", f"root={tmp_path}", module="normexp.cli.table")
    md = (tmp_path / "tables" / "full" / "adanorm_table1.md").read_text()
    assert md in proc.stdout
    rows = {line.split("|")[1].strip(): line for line in md.splitlines() if line.startswith("| ") and "Model" not in line}
    mnist_col = 7  # the 7th task column
    for label, norm in (("LayerNorm", "layernorm"), ("w/o Norm", "none")):
        accs = [r["test"]["accuracy"] for r in records if r["norm"] == norm]
        cell = rows[label].split("|")[1 + mnist_col].strip()
        assert cell.startswith(f"{sum(accs) / 2:.2f} ± ") and "(n=2)" in cell, cell
    assert rows["LayerNorm"].split("|")[1 + mnist_col].strip().endswith("/ 99.13")
    assert rows["LayerNorm"].split("|")[2].strip() == "– / 28.3"  # En-De: no run yet, the paper's value beside it
    assert rows["LayerNorm-simple"].split("|")[1 + mnist_col].strip() == "– / 99.09"
    csv = (tmp_path / "tables" / "full" / "adanorm_table1.csv").read_text()
    assert "LayerNorm,layernorm,mnist,accuracy," in csv
    assert r"\pm" in (tmp_path / "tables" / "full" / "adanorm_table1.tex").read_text()


def test_wandb_offline_run_holds_the_logged_values(tmp_path):
    run_cli(*SMALL, "logger=wandb", "name=wbtest", f"out_root={tmp_path}", env={"WANDB_MODE": "offline"})
    rec = only_record(tmp_path)
    [path] = list(tmp_path.rglob("offline-run-*/run-*.wandb"))
    run = read_offline_run(path)
    assert run["run"]["name"] == "mnist-layernorm-s1" and run["run"]["group"] == "wbtest"
    assert run["run"]["job_type"] == "full"
    assert run["run"]["config"]["norm"]["name"] == "layernorm"
    logged = {k: v for row in run["history"] for k, v in row.items()}
    assert logged["valid/accuracy"] == rec["curves"]["valid"][-1]["accuracy"]
    assert logged["test/accuracy"] == rec["test"]["accuracy"]
    assert run["summary"]["test/accuracy"] == rec["test"]["accuracy"] and run["summary"]["status"] == "completed"


def test_diverged_run_is_a_result(tmp_path):
    run_cli(*SMALL, "trainer.loss_ceiling=0.5", f"out_root={tmp_path}")  # the first loss (~2.3) is above it
    rec = only_record(tmp_path)
    assert rec["status"] == "diverged" and rec["diverged_at_step"] == 1 and rec["test"] == {}
    run_cli("table=adanorm_table1", f"root={tmp_path}", module="normexp.cli.table")
    assert "| LayerNorm |" in (md := (tmp_path / "tables" / "full" / "adanorm_table1.md").read_text())
    assert "Diverge / 99.13" in md


def test_missing_data_fails_clearly_and_is_recorded(tmp_path):
    env = {"NORMEXP_DATA_ROOT": str(tmp_path / "nodata"), "NORMEXP_DOWNLOAD_DIR": str(tmp_path / "nodata"),
           "no_proxy": "*", "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}
    proc = run_cli(*SMALL, f"out_root={tmp_path}/out", env=env, check=False)
    assert proc.returncode != 0
    assert "train-images-idx3-ubyte.gz" in proc.stderr and "NORMEXP_DATA_ROOT" in proc.stderr
    rec = only_record(tmp_path / "out")
    assert rec["status"] == "failed" and "DataError" in rec["error"]


def test_config_mistakes_fail_before_training_with_hydras_message(tmp_path):
    cases = {
        "task.bach_size=3": "Key 'bach_size' not in 'MnistConfig'",
        "trainer.max_epochs=many": "Value 'many' of type 'str' could not be converted to Integer",
        "norm=layernorn": "Could not find 'norm/layernorn'",
        "task=mnistt": "Could not find 'task/mnistt'",
    }
    for override, message in cases.items():
        proc = run_cli(override, f"out_root={tmp_path}", check=False)
        assert proc.returncode != 0 and message in proc.stderr, (override, proc.stderr[-2000:])
    assert "Available options in 'norm'" in run_cli("norm=layernorn", check=False).stderr
    assert not records_under(tmp_path), "nothing may run"


def test_every_experiment_and_task_composes():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from normexp.cli.config import register_configs
    from tests.conftest import REPO

    register_configs()
    experiments = sorted(p.relative_to(REPO / "conf/experiment").with_suffix("").as_posix()
                         for p in (REPO / "conf/experiment").rglob("*.yaml"))
    assert "adanorm/mnist" in experiments and "tiny/mnist" in experiments
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for name in experiments:
            cfg = compose("config", overrides=[f"experiment={name}"])
            assert cfg.task.name and cfg.model.name and cfg.profile in ("tiny", "full"), name
        for task in sorted(p.stem for p in (REPO / "conf/task").glob("*.yaml")):
            assert compose("config", overrides=[f"task={task}"]).task.name == task
    GlobalHydra.instance().clear()


def test_console_scripts_work_from_any_folder(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    proc = subprocess.run([bin_dir / "normexp-train", "--cfg", "job"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "name: mnist" in proc.stdout, proc.stderr
    proc = subprocess.run([bin_dir / "normexp-table", "--help"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "table" in proc.stdout, proc.stderr
