"""The committed results (docs/results/) are what normexp builds from the committed records, byte for byte."""
from tests.conftest import REPO, run_cli


def test_committed_tables_and_figures_are_rebuilt_from_the_committed_records(tmp_path):
    results = REPO / "docs" / "results"
    committed = results / "tables" / "full"
    tables = sorted(p.stem for p in committed.glob("*.md") if not p.stem.endswith("_speed"))
    assert {"adanorm_table1", "adanorm_table2", "adanorm_table3", "adanorm_detach"} <= set(tables)
    for table in tables:
        run_cli(f"table={table}", f"root={results}", "profile=full", f"out_dir={tmp_path}", module="normexp.cli.table")
    names = [p.relative_to(committed) for p in sorted(committed.rglob("*")) if p.is_file()]
    rebuilt = {p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*") if p.is_file()}
    assert rebuilt == set(names)
    for name in names:  # the figures' bytes depend on the machine's fonts and libraries: they are only checked present
        if name.suffix in (".md", ".csv", ".tex"):
            assert (tmp_path / "full" / name).read_bytes() == (committed / name).read_bytes(), name
