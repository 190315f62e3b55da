"""A table's summary W&B run: the cells, the claims and the speed table as ``wandb.Table``s, the figures as images.

Named ``<table>-summary``, grouped with the table's training runs (``group=<table name>``, as ``normexp-reproduce`` sets
``logger.group``), ``job_type=<profile>``. Offline by default (``WANDB_MODE`` overrides): the run lands in
``<out_dir>/wandb/offline-run-*`` and uploads with ``wandb sync``. The record files stay the truth; this is a view.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from normexp.analysis.claims import evaluate
from normexp.analysis.tables import build_cells, table_rows
from normexp.analysis.tables import build_cells, table_rows
from normexp.analysis.speed import SPEED_METRIC, speed_spec


def claim_rows(spec: Any, cells: dict) -> list[list[str]]:
    return [[claim.text, v.column, v.ours, v.detail, v.paper]
            for claim in spec.claims for v in evaluate(claim, spec, cells, spec.alpha)]


def log_summary(spec: Any, cells: dict, paths: dict[str, Path], profile: Optional[str], out_dir: Path,
                project: str = "normexp") -> Path:
    """Logs the summary run; returns its folder (``.../offline-run-*`` when offline)."""
    import wandb

    records = list({id(r): r for cell in cells.values() for r in cell.records}.values())  # a record may fill 2 cells
    job_type = profile or "+".join(sorted({r.profile for r in records})) or "none"
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")  # as the training runs' logger: no banner in the table's output
    run = wandb.init(project=project, group=spec.name, job_type=job_type, name=f"{spec.name}-summary", dir=str(out_dir),
                     mode=os.environ.get("WANDB_MODE", "offline"), reinit="finish_previous",
                     config={"table": spec.name, "profile": job_type, "baseline": spec.baseline, "alpha": spec.alpha,
                             "runs": len(records)})
    table = lambda rows: wandb.Table(columns=rows[0], data=rows[1:], allow_mixed_types=True)  # noqa: E731
    logged = {"table": table(table_rows(spec, cells))}
    if spec.claims:
        logged["claims"] = table([["claim", "column", "ours", "detail", "paper"], *claim_rows(spec, cells)])
    if not any(c.metric == SPEED_METRIC for c in spec.columns):
        timing = speed_spec(spec)
        logged["speed"] = table(table_rows(timing, build_cells(timing, records, profile)))
    for key, path in sorted(paths.items()):
        if key.startswith("plots/") and path.suffix == ".png":
            logged[key.removesuffix(".png")] = wandb.Image(str(path))
    run.log(logged)
    run.summary["markdown"] = Path(paths["md"]).read_text(encoding="utf-8")
    folder = Path(run.dir).parent
    run.finish()
    # finish() returns before wandb-core has written the offline file; teardown waits for it (and ends W&B's service,
    # which a table build does not use again), so `wandb sync` or a reader right after sees the whole run.
    wandb.teardown()
    return folder
