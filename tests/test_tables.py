"""Tables from constructed records: cell text, significance marks, the speed table, LaTeX/CSV, and the CLI."""
import csv
import io

import pytest

from normexp.cli.reproduce import load_table
from normexp.analysis.stats import welch
from normexp.analysis.tables import ColumnSpec, build_cells, to_csv, to_latex, to_markdown, write_table
from tests.conftest import run_cli
from tests.records import make_record, save_records

LN, ADA, SIMPLE = [99.10, 99.12, 99.14], [99.30, 99.32, 99.34], [99.11, 99.13, 99.12]


def seeds(task, norm, values, metric="accuracy", **kw):
    return [make_record(task, norm, s, v, metric=metric, **kw) for s, v in enumerate(values, 1)]


def cells_of(md: str) -> dict[str, list[str]]:
    """Row label → its cells, from a markdown table."""
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| ") and not line.startswith("| Model")}


def test_cells_carry_n_a_significance_mark_and_the_paper():
    spec = load_table("adanorm_table3")
    records = [*seeds("mnist", "layernorm", LN), *seeds("mnist", "adanorm", ADA), *seeds("mnist", "layernorm_simple", SIMPLE),
               make_record("mnist", "none", 1, 99.0),
               *[make_record("wmt14_ende", "none", s, status="diverged", metric="bleu") for s in (1, 2)]]
    cells = build_cells(spec, records)
    md = to_markdown(spec, cells)
    rows, mnist, ende = cells_of(md), 6, 0
    assert rows["LayerNorm"][mnist] == "99.12 ± 0.02 (n=3) / 99.13"
    assert rows["AdaNorm"][mnist] == "99.32 ± 0.02 (n=3)* [C = 1] / 99.35"  # 0.2 apart, std 0.02: p ≈ 2e-5
    assert rows["LayerNorm-simple"][mnist] == "99.12 ± 0.01 (n=3) / 99.09"  # the same as LayerNorm: no mark
    assert rows["w/o Norm"][mnist] == "99.00 (n=1) / 99.14"  # one seed: no test
    assert rows["w/o Norm"][ende] == "Diverge / Diverge" and rows["LayerNorm"][ende] == "– / 28.3"
    assert ("* differs from LayerNorm (Welch's t-test over seeds, two-sided p < 0.05); no test where either cell has "
            "fewer than 2 values or neither has any spread.") in md.splitlines()
    assert "- AdaNorm ≥ LayerNorm — holds on 1 of 1 columns run, not run on 7" in md
    table = {(r["norm"], r["task"]): r for r in csv.DictReader(io.StringIO(to_csv(spec, cells)))}
    assert float(table["adanorm", "mnist"]["p"]) == pytest.approx(welch(ADA, LN).p)
    assert table["adanorm", "mnist"]["significant"] == "True" and table["adanorm", "mnist"]["vs"] == "layernorm"
    assert table["layernorm_simple", "mnist"]["significant"] == "False"
    assert table["none", "mnist"]["p"] == "" and table["layernorm", "mnist"]["vs"] == ""
    assert welch(ADA, LN).p < 1e-3 < welch(SIMPLE, LN).p


def speed_records():
    times = {"layernorm": [100.0, 102.0, 98.0], "rmsnorm": [80.0, 81.0, 79.0], "prmsnorm": [90.0]}
    records = [make_record("wmt14_ende", norm, s, 25.0, metric="bleu", steps_per_s=1000 / t)
               for norm, ts in times.items() for s, t in enumerate(ts, 1)]
    # a diverged run's steps were timed all the same; a failed one gives no time
    return records + [make_record("wmt14_ende", "none", 1, status="diverged", steps_per_s=1000 / 70.0),
                      make_record("wmt14_ende", "none", 2, status="failed", steps_per_s=1000 / 60.0)]


def test_speed_table_time_per_1k_steps_and_speedup_over_layernorm(tmp_path):
    spec = load_table("rmsnorm_speed")
    paths = write_table(spec, save_records(tmp_path / "runs", speed_records()), tmp_path / "out")
    assert "speed_md" not in paths, "a speed table has no second speed table"
    md = paths["md"].read_text()
    rows = cells_of(md)
    assert rows["LayerNorm"][0] == "100.0 ± 2.0 (n=3) / 248±1.31"
    assert rows["RMSNorm"][0] == "80.0 ± 1.0 (n=3)* (+20.0%) / 231±0.04 (6.9%)"  # 1 − 80/100
    assert rows["pRMSNorm"][0] == "90.0 (n=1) (+10.0%) / 225±1.63 (9.3%)"
    assert rows["Baseline (w/o Norm)"][0] == "70.0 (n=1) (+30.0%) [+1 failed] / 210±0.23"
    assert rows["RMSNorm"][1] == "– / –"
    assert "Timed on host(s) testhost, trainer.device=cpu, trainer.precision=fp32" in md  # records without one: fp32
    assert ("- RMSNorm is faster than LayerNorm — holds on 1 of 1 columns run, not run on 7 (paper: holds on 1 of 1). "
            "En-De: holds (80.0 vs 100.0, p<0.001) [holds]; De-En: not run [–]") in md
    assert "| 4: Transformer base, TF zero, V100 (s / 1k steps) | 210±0.23 | 248±1.31 |" in md  # the paper's text
    table = {r["norm"]: r for r in csv.DictReader(io.StringIO(paths["csv"].read_text())) if r["task"] == "wmt14_ende"}
    assert float(table["rmsnorm"]["speedup"]) == pytest.approx(0.2) and float(table["rmsnorm"]["mean"]) == pytest.approx(80)
    assert table["layernorm"]["speedup"] == "0.0"


def test_every_metric_table_gets_its_speed_table(tmp_path):
    spec = load_table("adanorm_table1")
    paths = write_table(spec, save_records(tmp_path / "runs", speed_records()), tmp_path / "out")
    assert paths["speed_md"].name == "adanorm_table1_speed.md" and paths["speed_csv"].exists()
    rows = cells_of(paths["speed_md"].read_text())
    assert rows["LayerNorm"][0] == "100.0 ± 2.0 (n=3) / –"
    assert rows["w/o Norm"][0] == "70.0 (n=1) (+30.0%) [+1 failed] / –"
    assert cells_of(paths["md"].read_text())["LayerNorm"][0] == "25.0 ± 0.0 (n=3) / 28.3"


def test_latex_escapes_marks_and_claims():
    spec = load_table("rmsnorm_speed")
    tex = to_latex(spec, build_cells(spec, speed_records()))
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    assert r"80.0 $\pm$ 1.0 (n=3)$^{*}$ (+20.0\%) / 231$\pm$0.04 (6.9\%)" in tex
    assert r"- RMSNorm is faster than LayerNorm --- holds on 1 of 1 columns run" in tex
    assert not any(ch in line for line in body for ch in "±≥≤–—α") and r"\end{table}" in body
    assert "% | 8: order-embedding, MS-COCO (s / 0.1k steps) | 2.11±0.047 |" in tex  # the paper's text, as a comment


def test_column_filters_profiles_and_keys():
    column = ColumnSpec("mnist", "MNIST b4", "accuracy", where={"task.batch_size": 4})
    assert column.key == "mnist[task.batch_size=4]"
    assert column.matches(make_record("mnist", "layernorm", 1, 99.0, config={"task": {"batch_size": 4}}))
    assert not column.matches(make_record("mnist", "layernorm", 1, 99.0, config={"task": {"batch_size": 8}}))
    spec = load_table("adanorm_table1")
    mixed = [make_record("mnist", "layernorm", 1, 99.0), make_record("mnist", "layernorm", 2, 98.0, profile="full")]
    with pytest.raises(ValueError, match="pass profile=tiny or profile=full"):
        build_cells(spec, mixed)
    assert build_cells(spec, mixed, profile="full")["layernorm", "mnist"].values == [98.0]


def test_table_app_writes_table_speed_table_and_figures(tmp_path):
    grads = [{"step": s, "sites": {"layers.0.norm": {"mean": 1e-4, "var": 1e-3 / s}}} for s in (10, 20)]
    records = [*seeds("mnist", "layernorm", LN, grad_stats=grads), *seeds("mnist", "adanorm", ADA, grad_stats=grads)]
    root = save_records(tmp_path / "runs", records)
    proc = run_cli("table=adanorm_table3", f"root={root}", f"out_dir={tmp_path / 'out'}", module="normexp.cli.table")
    out = tmp_path / "out" / "tiny"  # the records' one profile, inferred
    assert (out / "adanorm_table3.md").read_text() in proc.stdout
    assert (out / "adanorm_table3_speed.md").read_text() in proc.stdout
    figures = sorted(p.name for p in (out / "plots" / "adanorm_table3").iterdir())
    assert figures == ["mnist-convergence.pdf", "mnist-convergence.png", "mnist-grad_stats.pdf", "mnist-grad_stats.png"]
    assert "99.32 ± 0.02 (n=3)* [C = 1] / 99.35" in proc.stdout


def test_a_rebuilt_table_leaves_no_stale_figure(tmp_path):
    import shutil

    grads = [{"step": s, "sites": {"layers.0.norm": {"mean": 1e-4, "var": 1e-3 / s}}} for s in (10, 20)]
    root = tmp_path / "runs"
    args = ("table=adanorm_table3", f"root={root}", f"out_dir={tmp_path / 'out'}")
    save_records(root, seeds("mnist", "layernorm", LN, grad_stats=grads))
    run_cli(*args, module="normexp.cli.table")
    figures = tmp_path / "out" / "tiny" / "plots" / "adanorm_table3"
    assert (figures / "mnist-grad_stats.png").is_file()
    shutil.rmtree(root)
    save_records(root, seeds("mnist", "layernorm", LN))  # the records no longer hold gradient statistics
    run_cli(*args, module="normexp.cli.table")
    assert sorted(p.name for p in figures.iterdir()) == ["mnist-convergence.pdf", "mnist-convergence.png"]
