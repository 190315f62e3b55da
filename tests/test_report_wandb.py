"""The table's summary W&B run, offline, read back from its files: grouping, the tables and the figures it holds."""
import math

from normexp.cli.reproduce import load_table
from normexp.analysis.report import write_report
from normexp.analysis.tables import build_cells, table_rows
from tests.records import make_record, save_records
from tests.wandb_files import logged_file, logged_table, read_offline_run


def test_summary_run_holds_the_table_claims_speed_and_figures(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    spec = load_table("adanorm_table3")
    records = [make_record("mnist", norm, seed, value, steps_per_s=sps)
               for norm, values, sps in (("layernorm", (99.10, 99.12, 99.14), 10.0), ("adanorm", (99.30, 99.32, 99.34), 8.0))
               for seed, value in enumerate(values, 1)]
    records += [make_record("wmt14_ende", "none", 1, status="diverged", metric="bleu")]
    root = save_records(tmp_path / "runs", records)
    paths = write_report(spec, root, tmp_path / "out", profile="tiny", plots=True, wandb=True)

    [wandb_file] = list((tmp_path / "out" / "tiny" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert paths["wandb"] == wandb_file.parent
    run = read_offline_run(wandb_file)
    assert run["run"]["name"] == "adanorm_table3-summary" and run["run"]["group"] == "adanorm_table3"
    assert run["run"]["job_type"] == "tiny" and run["run"]["config"]["runs"] == 7
    [row] = [r for r in run["history"] if "table/_type" in r]

    columns, data = logged_table(wandb_file, row, "table")
    expected = table_rows(spec, build_cells(spec, records))
    assert columns == expected[0] and len(data) == len(expected) - 1 == 32
    by_cell = {(r[1], r[2]): dict(zip(columns, r)) for r in data}
    ada = by_cell["adanorm", "mnist"]
    assert math.isclose(ada["mean"], 99.32) and ada["n"] == 3 and ada["paper"] == 99.35 and ada["significant"] is True
    assert by_cell["none", "wmt14_ende"]["diverged"] == 1 and by_cell["none", "wmt14_ende"]["paper"] == "Diverge"

    _, claims = logged_table(wandb_file, row, "claims")
    assert ["AdaNorm ≥ LayerNorm", "MNIST", "holds"] == claims[6][:3] and claims[6][4] == "holds"
    assert ["w/o Norm diverges on En-De", "En-De", "holds", "1 of 1 runs diverged", "holds"] in claims

    speed_columns, speed = logged_table(wandb_file, row, "speed")
    ada_speed = {(r[1], r[2]): dict(zip(speed_columns, r)) for r in speed}["adanorm", "mnist"]
    assert math.isclose(ada_speed["mean"], 125.0) and math.isclose(ada_speed["speedup"], -0.25)  # 1 − 125/100

    assert row["plots/mnist-convergence/_type"] == "image-file"
    image = logged_file(wandb_file, row, "plots/mnist-convergence")
    assert image.read_bytes()[:4] == b"\x89PNG"
    assert run["summary"]["markdown"] == paths["md"].read_text()
