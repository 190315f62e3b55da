"""``normexp-table table=<name>``: run records → a paper's table in markdown, LaTeX and CSV, the paper's numbers beside ours.

A table spec (``conf/table/<name>.yaml``) names rows (norm variants), columns (task, metric, direction), the paper's
value per cell, a baseline row and the paper's claims. A table holds the records of one profile (tiny or full), never
both: its files go to ``<out_dir>/<profile>/`` and its title names the profile (``table_profile``). Cells are rebuilt
from ``run.json`` files alone: mean ± std over seeds with n (one seed: its value, no ±), "Diverge" where every seed diverged, "failed" where runs failed, "–" where no run exists. A "*" after a
cell marks a significant difference to the baseline row (``normexp.analysis.stats``); the claims are checked under the table
(``normexp.analysis.claims``). Beside each table goes its speed table (``normexp.analysis.speed``) and, on request, the convergence and
gradient figures (``normexp.analysis.plots``) and a W&B summary run (``normexp.analysis.report_wandb``).
"""
from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional

from normexp.analysis.claims import ClaimSpec, claim_lines, claims_heading
from normexp.analysis.selection import choose, config_value, point_of, point_text
from normexp.records import RunRecord, find_records
from normexp.analysis.speed import SPEED_METRIC, seconds_per_1k_steps, speed_legend, speed_spec, speedup, speedup_text
from normexp.analysis.stats import ALPHA, Comparison, legend, mark, welch
from normexp.atomic import atomic_write_text


@dataclass
class RowSpec:
    """A row: the runs of one norm variant, optionally narrowed by config filters (``where``, e.g. ``{norm.C: 2,
    model.norm_sites: final}``; ``norm.*`` keys read the record's resolved norm) or spread over a hyper-parameter grid
    chosen per column on the validation set (``grid``, e.g. ``{norm.C: [0.5, 1, 2]}``; ``normexp.analysis.selection``).
    ``id`` is the row's name in ``paper:``, ``baseline:`` and the claims (default: the norm), needed when two rows share
    a norm. Without a ``label`` the row is labelled by its norm and what distinguishes it (``adanorm (C = 2)``)."""

    norm: str
    label: str = ""
    id: Optional[str] = None
    where: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list] = field(default_factory=dict)

    def __post_init__(self):
        if not self.label:
            self.label = self.norm + (f" ({point_text(self.where, tuple(self.where.values()))})" if self.where else "")

    @property
    def key(self) -> str:
        return self.id or self.norm

    def matches(self, record: RunRecord) -> bool:
        return (record.norm == self.norm and all(config_value(record, k) == v for k, v in self.where.items())
                and (not self.grid or point_of(record, self.grid) is not None))


@dataclass
class ColumnSpec:
    task: str
    label: str
    metric: str  # a test metric, or s_per_1k_steps (training speed, from the record)
    higher_is_better: bool = True
    digits: int = 2
    where: dict[str, Any] = field(default_factory=dict)  # config filters, e.g. {task.batch_size: 4}
    # The experiment preset per profile that normexp-reproduce runs for this column (default: tiny/<task> and
    # adanorm/<task>), and the experiment names (a record's ``name``) the column accepts (default: any). Names keep
    # another experiment's runs that pass the same filters (e.g. the re-centring sweep's centre-0 runs) out of the cell.
    experiments: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    id: Optional[str] = None  # the column's name in paper: and claims (default: task[k=v,...] from its filters)

    def matches(self, record: RunRecord) -> bool:
        return (record.task == self.task and (not self.names or record.name in self.names)
                and all(_lookup(record.config, k) == v for k, v in self.where.items()))

    @property
    def key(self) -> str:
        return self.id or column_key(self)


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
    paper: dict[str, dict[str, Any]] = field(default_factory=dict)  # norm → column key → number or text ("Diverge")
    baseline: str = "layernorm"  # the row every other row is tested against, and speed-ups are relative to
    alpha: float = ALPHA  # significance level of the marks and the claims
    claims: list[ClaimSpec] = field(default_factory=list)
    reference: str = ""  # the paper's text printed under the table (e.g. its timing tables)

    def __post_init__(self):
        for what, names in (("id", [r.key for r in self.rows]), ("label", [r.label for r in self.rows])):
            if twice := sorted({n for n in names if names.count(n) > 1}):
                raise ValueError(f"table {self.name}: rows share the {what} {twice}: give each row its own id and label "
                                 "(rows of one norm differ by where: or grid:)")


def with_rows(spec: TableSpec, rows: Iterable[RowSpec]) -> TableSpec:
    """``spec`` with ``rows`` below its own, e.g. a custom norm's row given on the command line (no paper values)."""
    rows = list(rows)
    taken = {r.norm for r in spec.rows}
    if clash := sorted({r.norm for r in rows} & taken):
        raise ValueError(f"table {spec.name} already has a row for norm {', '.join(clash)}")
    return replace(spec, rows=[*spec.rows, *rows])


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)  # the metric of each seed that gave one
    seeds: list[int] = field(default_factory=list)
    diverged: int = 0  # diverged runs that gave no value
    failed: int = 0
    running: int = 0
    paper: Any = None
    records: list[RunRecord] = field(default_factory=list, repr=False)  # every record of the cell, for plots and claims
    chosen: str = ""  # a grid row's value chosen on the validation set, e.g. "C = 2"

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else (0.0 if self.values else None)

    def text(self, digits: int, pm: str = "±", mark: str = "") -> str:
        """``mark``: what follows "(n=…)" (significance, speed-up)."""
        if self.n == 1:  # one seed: no spread to show
            out = f"{self.mean:.{digits}f} (n=1){mark}"
        elif self.values:
            out = f"{self.mean:.{digits}f} {pm} {self.std:.{digits}f} (n={self.n}){mark}"
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


PROFILES = ("full", "tiny")


class ProfileError(ValueError):
    """No profile can be chosen for a table (several in the records, none, or an unknown one); one line says why."""


def table_profile(spec: TableSpec, records: Iterable[RunRecord], profile: Optional[str]) -> str:
    """The profile the table shows: ``profile`` if given, else the one profile of the spec's records."""
    if profile is not None:
        if profile not in PROFILES:
            raise ProfileError(f"profile={profile} is not valid: choose one of {', '.join(PROFILES)}")
        return profile
    norms = {r.norm for r in spec.rows}
    found = sorted({rec.profile for rec in records
                    if rec.norm in norms and any(c.matches(rec) for c in spec.columns)})
    if len(found) == 1:
        return found[0]
    if not found:
        raise ProfileError(f"no run records of table {spec.name} here: run `normexp-reproduce table={spec.name}` "
                           "first, or pass root=<folder holding the runs> (profile=full shows the empty table)")
    raise ProfileError(f"the records of table {spec.name} hold several profiles ({', '.join(found)}): "
                       f"choose one with {' or '.join(f'profile={p}' for p in found)}")


def column_key(column: ColumnSpec) -> str:
    """A column's id in the paper dict and the cells: its task, or task[k=v,...] when it filters on config."""
    return column.task + ("[" + ",".join(f"{k}={v}" for k, v in column.where.items()) + "]" if column.where else "")


def build_cells(spec: TableSpec, records: Iterable[RunRecord], profile: Optional[str] = None) -> dict:
    """(row key, column key) → Cell, from the records of the spec's rows and columns (of one profile)."""
    cells = {(r.key, c.key): Cell(paper=spec.paper.get(r.key, {}).get(c.key)) for r in spec.rows for c in spec.columns}
    profiles: dict[tuple, set] = {}
    for rec in records:
        if profile is not None and rec.profile != profile:
            continue
        for row in (r for r in spec.rows if r.matches(rec)):
            for column in (c for c in spec.columns if c.matches(rec)):
                key = (row.key, column.key)
                profiles.setdefault(key, set()).add(rec.profile)
                _add(cells[key], rec, column.metric)
    mixed = {k: sorted(v) for k, v in profiles.items() if len(v) > 1}
    if mixed:
        raise ValueError(f"records of several profiles {mixed} would be mixed in one cell: pass profile=tiny or profile=full")
    for row in (r for r in spec.rows if r.grid):
        for column in spec.columns:
            cells[row.key, column.key] = chosen_cell(row, cells[row.key, column.key], column.metric)
    return cells


def chosen_cell(row: RowSpec, cell: Cell, metric: str) -> Cell:
    """A grid row's cell narrowed to the runs of the grid point chosen on the validation set (``selection.choose``)."""
    point = choose(cell.records, row.grid)
    if point is None:
        return cell
    out = Cell(paper=cell.paper, chosen=point_text(row.grid, point))
    for rec in cell.records:
        if point_of(rec, row.grid) == point:
            _add(out, rec, metric)
    return out


def metric_value(rec: RunRecord, metric: str) -> float | None:
    if metric == SPEED_METRIC:
        return seconds_per_1k_steps(rec)
    return float(rec.test[metric]) if rec.status == "completed" and metric in rec.test else None


def _add(cell: Cell, rec: RunRecord, metric: str) -> None:
    cell.records.append(rec)
    if (value := metric_value(rec, metric)) is not None:
        cell.values.append(value)
        cell.seeds.append(rec.seed)
    elif rec.status == "diverged":
        cell.diverged += 1
    elif rec.status in ("failed", "completed"):  # completed without the metric: a broken run, not a number
        cell.failed += 1
    else:
        cell.running += 1


def compare_to_baseline(spec: TableSpec, cells: dict) -> dict[tuple[str, str], Comparison]:
    """(norm, column key) → Welch's test of the cell against the baseline row's cell of the column."""
    if spec.baseline not in {r.key for r in spec.rows}:
        return {}
    return {(r.key, c.key): welch(cells[r.key, c.key].values, cells[spec.baseline, c.key].values)
            for r in spec.rows if r.key != spec.baseline for c in spec.columns}


def _baseline_label(spec: TableSpec) -> Optional[str]:
    return next((r.label for r in spec.rows if r.key == spec.baseline), None)


def _paper(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def _cell_texts(spec: TableSpec, cells: dict) -> dict[tuple[str, str], str]:
    """(norm, column key) → "<ours><mark>[ (speed-up)] / <paper>"."""
    tests = compare_to_baseline(spec, cells)
    out = {}
    for r in spec.rows:
        for c in spec.columns:
            cell, suffix = cells[r.key, c.key], mark(tests.get((r.key, c.key)), spec.alpha)
            if c.metric == SPEED_METRIC and r.key != spec.baseline:
                suffix += speedup_text(cell, cells.get((spec.baseline, c.key)))
            suffix += f" [{cell.chosen}]" if cell.chosen else ""
            out[r.key, c.key] = f"{cell.text(c.digits, mark=suffix)} / {_paper(cell.paper, c.digits)}"
    return out


def notes(spec: TableSpec, cells: dict, reference: bool = True) -> list[str]:
    """The lines under a table: what a cell holds, the significance legend, speed, the claims, the paper's text."""
    timed = [c for c in spec.columns if c.metric == SPEED_METRIC]
    what = "s per 1k training steps" if len(timed) == len(spec.columns) else "test"
    lines = [f"Each cell: ours ({what}, mean ± std over seeds, n seeds) / the paper's number. {spec.caption}".strip(),
             legend(_baseline_label(spec), spec.alpha)]
    lines += grid_notes(spec)
    if timed:
        lines.append(speed_legend({k: v for k, v in cells.items() if k[1] in {c.key for c in timed}}, _baseline_label(spec)))
    if spec.claims:
        lines += ["", claims_heading(spec.alpha), *(f"- {line}" for line in claim_lines(spec, cells))]
    if reference and spec.reference.strip():
        lines += ["", spec.reference.strip()]
    return lines


def titled(spec: TableSpec, profile: Optional[str]) -> TableSpec:
    """``spec`` with the profile in its title, so that no tiny table passes for a full one."""
    from dataclasses import replace

    return replace(spec, title=f"{spec.title} [{profile} profile]") if profile else spec


def grid_notes(spec: TableSpec) -> list[str]:
    """One line per grid row: which values were tried and how the bracketed one was chosen."""
    return [f"{r.label}: " + ", ".join(f"{key.rsplit('.', 1)[-1]} ∈ {{{', '.join(map(str, values))}}}"
                                     for key, values in r.grid.items())
            + " chosen per column on the validation set (best mean valid score of the task's primary metric over the "
              "seeds every value has; the choice in brackets); test at that value." for r in spec.rows if r.grid]


def to_markdown(spec: TableSpec, cells: dict) -> str:
    head = "| Model | " + " | ".join(f"{c.label} ({'+' if c.higher_is_better else '−'})" for c in spec.columns) + " |"
    lines = [f"### {spec.title}", "", head, "|---" * (len(spec.columns) + 1) + "|"]
    texts = _cell_texts(spec, cells)
    for r in spec.rows:
        lines.append(f"| {r.label} | " + " | ".join(texts[r.key, c.key] for c in spec.columns) + " |")
    lines += ["", *notes(spec, cells)]
    return "\n".join(lines) + "\n"


_TEX = str.maketrans({"±": r"$\pm$", "–": "--", "—": "---", "−": "$-$", "_": r"\_", "%": r"\%", "&": r"\&",
                      "#": r"\#", "≥": r"$\geq$", "≤": r"$\leq$", ">": "$>$", "<": "$<$", "α": r"$\alpha$",
                      "*": r"$^{*}$", "Δ": r"$\Delta$"})


def to_latex(spec: TableSpec, cells: dict) -> str:
    def esc(text: str) -> str:
        return text.translate(_TEX)

    cols = "l" + "c" * len(spec.columns)
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             "Model & " + " & ".join(esc(c.label) for c in spec.columns) + r" \\", r"\midrule"]
    texts = _cell_texts(spec, cells)
    for r in spec.rows:
        lines.append(esc(r.label) + " & " + " & ".join(esc(texts[r.key, c.key]) for c in spec.columns) + r" \\")
    under = [line for line in notes(spec, cells, reference=False)[1:] if line]
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{esc(spec.title)}. Ours / paper. {esc(spec.caption)}}}",
              r"\par\smallskip{\footnotesize", *(esc(line) + r"\\" for line in under), "}", r"\end{table}"]
    lines += [f"% {line}" for line in spec.reference.strip().splitlines()]  # the paper's text, for the reader
    return "\n".join(lines) + "\n"


def table_rows(spec: TableSpec, cells: dict) -> list[list]:
    """The header, then one row per cell: the numbers, the test against the baseline and (speed columns) the speed-up."""
    rows = [["model", "norm", "task", "metric", "mean", "std", "n", "seeds", "diverged", "failed", "paper",
             "vs", "t", "df", "p", "significant", "speedup", "chosen"]]
    tests = compare_to_baseline(spec, cells)
    for r in spec.rows:
        for c in spec.columns:
            cell, test = cells[r.key, c.key], tests.get((r.key, c.key), Comparison())
            gain = speedup(cell.mean, cells[spec.baseline, c.key].mean) \
                if c.metric == SPEED_METRIC and (spec.baseline, c.key) in cells else None
            rows.append([r.label, r.key, c.key, c.metric, cell.mean, cell.std, cell.n, " ".join(map(str, cell.seeds)),
                         cell.diverged, cell.failed, cell.paper, spec.baseline if (r.key, c.key) in tests else None,
                         test.t, test.df, test.p, test.significant(spec.alpha) if test.p is not None else None, gain,
                         cell.chosen or None])
    return rows


def to_csv(spec: TableSpec, cells: dict) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(table_rows(spec, cells))
    return out.getvalue()


def _write_text(spec: TableSpec, cells: dict, out_dir: Path, prefix: str = "") -> dict[str, Path]:
    paths = {}
    for ext, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv)):
        paths[prefix + ext] = Path(out_dir) / f"{spec.name}.{ext}"
        atomic_write_text(paths[prefix + ext], render(spec, cells))
    return paths


def write_table(spec: TableSpec, root: Path, out_dir: Path, profile: Optional[str] = None) -> dict[str, Path]:
    """Builds ``spec`` from the records of ``profile`` under ``root`` and writes ``<name>.{md,tex,csv}`` to ``out_dir``
    and its speed table ``speed_<name>.{md,tex,csv}`` (unless the table is a speed table). ``analysis.report`` picks
    the profile and its folder and adds figures and W&B."""
    records = [rec for _, rec in find_records(root)]
    cells = build_cells(spec, records, profile)
    paths = _write_text(titled(spec, profile), cells, out_dir)
    if not any(c.metric == SPEED_METRIC for c in spec.columns):
        timing = speed_spec(spec)
        paths.update(_write_text(titled(timing, profile), build_cells(timing, records, profile), out_dir,
                                 prefix="speed_"))
    return paths
