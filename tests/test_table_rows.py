"""Rows that select runs by config values (two AdaNorm rows, C = 1 and C = 2) and rows whose C is chosen on valid."""
import pytest

from normexp.norms import NormConfig, resolved_options
from normexp.analysis.tables import ColumnSpec, RowSpec, TableSpec, build_cells, to_csv, to_markdown
from tests.records import make_record
from tests.test_tables import cells_of


def adanorm(seed, test, valid, C, task="rt", status="completed"):
    """A run of AdaNorm that differs from the others only in C (and its numbers)."""
    rec = make_record(task, "adanorm", seed, test, status=status,
                      config={"task": {"name": task}, "norm": {"name": "adanorm", "C": C, "convention": "official"}})
    rec.extra["norm"] = resolved_options(NormConfig(name="adanorm", C=C, convention="official"))
    rec.primary_metric, rec.higher_is_better = "accuracy", True
    rec.best_valid = {"accuracy": valid} if status == "completed" else {}
    return rec


def table(*rows, baseline="ada_c1"):
    return TableSpec(name="t", title="T", rows=list(rows), baseline=baseline,
                     columns=[ColumnSpec("rt", "RT", "accuracy"), ColumnSpec("sst5", "SST5", "accuracy")])


def test_two_adanorm_rows_differ_only_in_C():
    spec = table(RowSpec("adanorm", "AdaNorm (C = 1)", id="ada_c1", where={"norm.C": 1}),
                 RowSpec("adanorm", id="ada_c2", where={"norm.C": 2.0}))
    records = [adanorm(s, 70.0 + s, 0, C=1.0) for s in (1, 2, 3)] + [adanorm(s, 80.0 + s, 0, C=2.0) for s in (1, 2, 3)]
    cells = build_cells(spec, records)
    assert cells["ada_c1", "rt"].values == [71.0, 72.0, 73.0] and cells["ada_c2", "rt"].values == [81.0, 82.0, 83.0]
    rows = cells_of(to_markdown(spec, cells))
    assert rows["AdaNorm (C = 1)"][0] == "72.00 ± 1.00 (n=3) / –"
    assert rows["adanorm (C = 2)"][0] == "82.00 ± 1.00 (n=3)* / –"  # the label says what tells the rows apart
    assert "ada_c2,rt,accuracy,82.0" in to_csv(spec, cells)


def test_rows_must_be_told_apart():
    with pytest.raises(ValueError, match=r"rows share the id \['adanorm'\]: give each row its own id"):
        table(RowSpec("adanorm", "A", where={"norm.C": 1}), RowSpec("adanorm", "B", where={"norm.C": 2}))


def test_C_chosen_on_valid_per_column_and_test_reported_there():
    grid = RowSpec("adanorm", "AdaNorm", id="ada", grid={"norm.C": [0.5, 1, 2]})
    spec = table(grid, baseline="ada")
    valid = {0.5: 60.0, 1.0: 75.0, 2.0: 70.0}  # RT: C = 1 is best on valid, though C = 2 is best on test
    test = {0.5: 61.0, 1.0: 72.0, 2.0: 90.0}
    records = [adanorm(s, test[C] + s / 10, valid[C] + s / 10, C) for C in valid for s in (1, 2, 3)]
    records += [adanorm(s, test[2.0], 99.0, 2.0) for s in (4, 5)]  # seeds only one value has don't vote
    # SST5: C = 2 wins on valid; C = 0.5 has one diverged run, which ranks it last whatever its valid score
    records += [adanorm(s, 40.0 + C, 30.0 + C, C, task="sst5") for C in (1.0, 2.0) for s in (1, 2)]
    records += [adanorm(1, 50.0, 99.0, 0.5, task="sst5"), adanorm(2, None, None, 0.5, task="sst5", status="diverged")]
    records += [adanorm(1, 99.0, 99.9, 3.0)]  # off the grid: not in the row
    cells = build_cells(spec, records)
    assert (cells["ada", "rt"].chosen, cells["ada", "rt"].seeds) == ("C = 1", [1, 2, 3])
    assert cells["ada", "rt"].mean == pytest.approx(72.2)
    assert (cells["ada", "sst5"].chosen, cells["ada", "sst5"].values) == ("C = 2", [42.0, 42.0])
    md = to_markdown(spec, cells)
    assert cells_of(md)["AdaNorm"] == ["72.20 ± 0.10 (n=3) [C = 1] / –", "42.00 ± 0.00 (n=2) [C = 2] / –"]
    assert "AdaNorm: C ∈ {0.5, 1, 2} chosen per column on the validation set" in md
    assert ",C = 1" in to_csv(spec, cells)
