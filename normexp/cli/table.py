"""``normexp-table table=<name> [root=outputs] [profile=tiny|full] [out_dir=...] [plots=true] [wandb=false]``.

The files go to ``<out_dir>/<profile>/`` (default ``<root>/tables/<profile>/``); without ``profile=`` the one profile
of the records is taken, and records of both profiles are refused in one line.

``add_rows=[{norm: MyNorm, label: My norm}]`` adds rows below the table's own (a custom norm's: docs/custom_norm.md).

The Hydra entry point for tables: the table (md/tex/csv with significance marks and the paper's claims checked), its
speed table, the figures (``plots``) and a summary W&B run (``wandb``, offline unless WANDB_MODE says otherwise).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from normexp.cli import conf_dir
from normexp.analysis.report import write_report
from normexp.analysis.tables import RowSpec, TableSpec, with_rows


@dataclass
class TableAppConfig:
    table: Any = MISSING
    root: str = "outputs"  # where to look for run records (any depth)
    profile: Optional[str] = None  # tiny | full; required when the records hold both
    out_dir: Optional[str] = None  # default: <root>/tables; the files go to <out_dir>/<profile>/
    plots: bool = True  # convergence and gradient figures (PNG + PDF) under <out_dir>/<profile>/plots/<table>/
    wandb: bool = False  # a summary W&B run of the table and figures
    wandb_project: str = "normexp"
    add_rows: list[RowSpec] = field(default_factory=list)  # rows below the table's own: a norm name and a label


cs = ConfigStore.instance()
cs.store(name="table_app_schema", node=TableAppConfig)
cs.store(group="table", name="table_schema", node=TableSpec)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="tables")
def main(cfg: DictConfig) -> None:
    app: TableAppConfig = OmegaConf.to_object(cfg)
    try:
        spec = with_rows(app.table, app.add_rows)
    except ValueError as e:
        raise SystemExit(f"add_rows: {e}") from e
    root = Path(cfg.root)
    if not root.is_dir():
        raise SystemExit(f"no run records: {root} is not a folder (pass root=<folder holding the runs>)")
    out_dir = Path(cfg.out_dir) if cfg.out_dir else root / "tables"
    try:
        paths = write_report(spec, root, out_dir, cfg.profile, plots=cfg.plots, wandb=cfg.wandb,
                             wandb_project=cfg.wandb_project)
    except ValueError as e:  # a profile that cannot be chosen, a run.json that is not a record: one line, exit 2
        print(f"Error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    print(paths["md"].read_text(encoding="utf-8"))
    if "speed_md" in paths:
        print(paths["speed_md"].read_text(encoding="utf-8"))
    print("written: " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
