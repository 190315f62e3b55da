"""A table with everything around it: the text tables, the figures and the summary W&B run, from one call.

The top of the analysis layer: ``tables`` builds cells from records, ``plots`` and ``report_wandb`` view them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from normexp.analysis.tables import TableSpec, build_cells, table_profile, write_table
from normexp.records import find_records


def write_report(spec: TableSpec, root: Path, out_dir: Path, profile: Optional[str] = None, plots: bool = False,
                 wandb: bool = False, wandb_project: str = "normexp") -> dict[str, Path]:
    """``write_table``'s files in ``out_dir/<profile>/`` (``profile`` None: the one profile of the records, see
    ``tables.table_profile``), with ``plots`` the figures under ``out_dir/<profile>/plots/<name>/`` (figures of an
    earlier call removed first) and with ``wandb`` a summary W&B run (offline unless WANDB_MODE says otherwise)."""
    records = [rec for _, rec in find_records(root)]
    profile = table_profile(spec, records, profile)
    out_dir = Path(out_dir) / profile
    paths = write_table(spec, root, out_dir, profile)
    if not (plots or wandb):
        return paths
    cells = build_cells(spec, records, profile)
    if plots:  # matplotlib and wandb take seconds to import: only when asked for
        from normexp.analysis.plots import write_plots

        figures = out_dir / "plots" / spec.name
        for stale in (figures.glob("*.png") if figures.is_dir() else ()):
            stale.unlink()
        for stale in (figures.glob("*.pdf") if figures.is_dir() else ()):
            stale.unlink()
        paths.update(write_plots(spec, cells, figures))
    if wandb:
        from normexp.analysis.report_wandb import log_summary

        paths["wandb"] = log_summary(spec, cells, paths, profile, Path(out_dir), wandb_project)
    return paths
