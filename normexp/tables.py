"""``normexp-table table=<name>``: run records → a paper's table in markdown, LaTeX and CSV, the paper's numbers beside ours.

A table spec (``conf/table/<name>.yaml``) names rows (norm variants), columns (task, metric, direction) and the paper's
value per cell. Cells are rebuilt from ``run.json`` files alone: mean ± std over seeds with n, "Diverge" where every
seed diverged, "failed" where runs failed, "–" where no run exists.
"""
from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from normexp.runs import RunRecord, find_records
from normexp.tasks.files import atomic_write_text


@dataclass
class RowSpec:
    norm: str
    label: str


@dataclass
class ColumnSpec:
    task: str
    label: str
    metric: str
    higher_is_better: bool = True
    digits: int = 2
    where: dict[str, Any] = field(default_factory=dict)  # config filters, e.g. {task.batch_size: 4}

    def matches(self, record: RunRecord) -> bool:
        return record.task == self.task and all(_lookup(record.config, k) == v for k, v in self.where.items())


def _lookup(config: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(config, dict) or part not in config:
            return None
        config = config[part]
    return config


@dataclass
class TableSpec:
    name: str
    title: str
    caption: str = ""
    rows: list[RowSpec] = field(default_factory=list)
    columns: list[ColumnSpec] = field(default_factory=list)
    paper: dict[str, dict[str, Any]] = field(default_factory=dict)  # norm → task → number or "Diverge"


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)  # test metric of each completed seed
    seeds: list[int] = field(default_factory=list)
    diverged: int = 0
    failed: int = 0
    running: int = 0
    paper: Any = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else (0.0 if self.values else None)

    def text(self, digits: int, pm: str = "±") -> str:
        if self.values:
            out = f"{self.mean:.{digits}f} {pm} {self.std:.{digits}f} (n={self.n})"
        elif self.diverged:
            out = "Diverge"
        elif self.failed:
            out = "failed"
        elif self.running:
            out = "running"
        else:
            out = "–"
        notes = [f"{k} {what}" for k, what in ((self.diverged, "diverged"), (self.failed, "failed")) if k and self.values]
        if notes:
            out += f" [+{', '.join(notes)}]"
        return out


def column_key(column: ColumnSpec) -> str:
    """A column's id in the paper dict and the cells: its task, or task[k=v,...] when it filters on config."""
    return column.task + ("[" + ",".join(f"{k}={v}" for k, v in column.where.items()) + "]" if column.where else "")


def build_cells(spec: TableSpec, records: Iterable[RunRecord], profile: Optional[str] = None) -> dict:
    """(norm, column key) → Cell, from the records of the spec's rows and columns (of one profile)."""
    norms = {r.norm for r in spec.rows}
    cells = {(r.norm, column_key(c)): Cell(paper=spec.paper.get(r.norm, {}).get(column_key(c)))
             for r in spec.rows for c in spec.columns}
    profiles: dict[tuple, set] = {}
    for rec in records:
        if rec.norm not in norms or (profile is not None and rec.profile != profile):
            continue
        for column in (c for c in spec.columns if c.matches(rec)):
            key = (rec.norm, column_key(column))
            profiles.setdefault(key, set()).add(rec.profile)
            _add(cells[key], rec, column.metric)
    mixed = {k: sorted(v) for k, v in profiles.items() if len(v) > 1}
    if mixed:
        raise ValueError(f"records of several profiles {mixed} would be mixed in one cell: pass profile=tiny or profile=full")
    return cells


def _add(cell: Cell, rec: RunRecord, metric: str) -> None:
    if rec.status == "completed" and metric in rec.test:
        cell.values.append(float(rec.test[metric]))
        cell.seeds.append(rec.seed)
    elif rec.status == "diverged":
        cell.diverged += 1
    elif rec.status in ("failed", "completed"):  # completed without the metric: a broken run, not a number
        cell.failed += 1
    else:
        cell.running += 1


def _paper(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def to_markdown(spec: TableSpec, cells: dict) -> str:
    head = "| Model | " + " | ".join(f"{c.label} ({'+' if c.higher_is_better else '−'})" for c in spec.columns) + " |"
    lines = [f"### {spec.title}", "", head, "|---" * (len(spec.columns) + 1) + "|"]
    for r in spec.rows:
        row = [f"{cells[r.norm, column_key(c)].text(c.digits)} / {_paper(cells[r.norm, column_key(c)].paper, c.digits)}"
               for c in spec.columns]
        lines.append(f"| {r.label} | " + " | ".join(row) + " |")
    lines += ["", f"Each cell: ours (test, mean ± std over seeds, n seeds) / the paper's number. {spec.caption}".strip()]
    return "\n".join(lines) + "\n"


def to_latex(spec: TableSpec, cells: dict) -> str:
    def esc(text: str) -> str:
        return text.replace("±", r"$\pm$").replace("–", "--").replace("_", r"\_").replace("%", r"\%")

    cols = "l" + "c" * len(spec.columns)
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             "Model & " + " & ".join(esc(c.label) for c in spec.columns) + r" \\", r"\midrule"]
    for r in spec.rows:
        row = [esc(f"{cells[r.norm, column_key(c)].text(c.digits)} / {_paper(cells[r.norm, column_key(c)].paper, c.digits)}")
               for c in spec.columns]
        lines.append(esc(r.label) + " & " + " & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(spec.title)}. Ours / paper. {esc(spec.caption)}}}",
              r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(spec: TableSpec, cells: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["model", "norm", "task", "metric", "mean", "std", "n", "seeds", "diverged", "failed", "paper"])
    for r in spec.rows:
        for c in spec.columns:
            cell = cells[r.norm, column_key(c)]
            writer.writerow([r.label, r.norm, column_key(c), c.metric, cell.mean, cell.std, cell.n,
                             " ".join(map(str, cell.seeds)), cell.diverged, cell.failed, cell.paper])
    return out.getvalue()


def write_table(spec: TableSpec, root: Path, out_dir: Path, profile: Optional[str] = None) -> dict[str, Path]:
    """Builds ``spec`` from every record under ``root`` and writes ``<name>.{md,tex,csv}`` to ``out_dir``."""
    cells = build_cells(spec, (rec for _, rec in find_records(root)), profile)
    paths = {}
    for ext, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv)):
        paths[ext] = Path(out_dir) / f"{spec.name}.{ext}"
        atomic_write_text(paths[ext], render(spec, cells))
    return paths

