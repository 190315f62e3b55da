"""The committed results (docs/results/) are what normexp builds from the committed records, byte for byte."""
from tests.conftest import REPO, run_cli


def test_committed_table_and_figures_are_rebuilt_from_the_committed_records(tmp_path):
    results = REPO / "docs" / "results"
    run_cli("table=adanorm_table3", f"root={results}", "profile=full", f"out_dir={tmp_path}",
            module="normexp.cli.table")
    committed = results / "tables" / "full"
    names = [p.relative_to(committed) for p in sorted(committed.rglob("*")) if p.is_file()]
    assert len(names) >= 10 and {p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*")
                                 if p.is_file()} == set(names)
    for name in names:  # the figures' bytes depend on the machine's fonts and libraries: they are only checked present
        if name.suffix in (".md", ".csv", ".tex"):
            assert (tmp_path / "full" / name).read_bytes() == (committed / name).read_bytes(), name
