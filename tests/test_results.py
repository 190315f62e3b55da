"""The committed results (docs/results/) are what normexp builds from the committed records, byte for byte."""
from tests.conftest import REPO, run_cli


def test_committed_table_is_rebuilt_from_the_committed_records(tmp_path):
    results = REPO / "docs" / "results"
    run_cli("table=adanorm_table3", f"root={results}", "profile=full", f"out_dir={tmp_path}", "plots=false",
            module="normexp.cli.table")
    for name in ("adanorm_table3.md", "adanorm_table3.csv", "adanorm_table3_speed.md"):
        assert (tmp_path / "full" / name).read_bytes() == (results / "tables" / "full" / name).read_bytes(), name
