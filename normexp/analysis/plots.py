"""Figures from run records, PNG and PDF: per task, the convergence figure and the ∂ℓ/∂x statistics at the norm inputs.

- ``<column>-convergence``: train loss (per epoch) and valid loss against training steps, one line per variant, the mean
  over seeds with a ±1 std band. The AdaNorm paper's figure: LayerNorm reaches a lower train loss but a higher valid
  loss than AdaNorm (PTB, De-En).
- ``<column>-grad_stats``: the mean and variance of ∂ℓ/∂x at the norm inputs over training, from runs trained with
  ``trainer.grad_stats=true`` (``record.extra["grad_stats"]``). The AdaNorm paper's Observation 2: the mean's
  derivative re-centres ∂ℓ/∂x, the variance's derivative shrinks its variance. Each site's mean is taken as |mean|
  before averaging over the model's norm sites, so that opposite signs at two sites do not cancel into a false
  "re-centred".

Only completed and diverged runs are drawn (a diverged run up to its last finite value). Figures are built on
``matplotlib.figure.Figure`` with the Agg canvas: no pyplot state, no display needed.
"""
from __future__ import annotations

import math
import re
import statistics
from pathlib import Path
from typing import Any, Callable, Iterable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DRAWN = ("completed", "diverged")


def mean_band(series: Iterable[Iterable[tuple[float, float]]]) -> tuple[list[float], list[float], list[float]]:
    """Points (x, y) of several seeds → x, mean of y and std of y at each x (std 0 where one seed has the x)."""
    at: dict[float, list[float]] = {}
    for points in series:
        for x, y in points:
            if y is not None and math.isfinite(y):
                at.setdefault(x, []).append(y)
    xs = sorted(at)
    return xs, [statistics.fmean(at[x]) for x in xs], [statistics.stdev(at[x]) if len(at[x]) > 1 else 0.0 for x in xs]


def _draw(ax, spec: Any, cells: dict, column: Any, points: Callable[[Any], list[tuple[float, float]]]) -> bool:
    """One line with a band per row; False when no row has a point."""
    drawn = False
    for row in spec.rows:
        series = [points(r) for r in cells[row.key, column.key].records if r.status in DRAWN]
        xs, mean, std = mean_band(series)
        if not xs:
            continue
        n = sum(bool(s) for s in series)
        line, = ax.plot(xs, mean, marker="o" if len(xs) < 30 else None, markersize=3, label=f"{row.label} (n={n})")
        ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color=line.get_color(), alpha=0.2, linewidth=0)
        drawn = True
    return drawn


def _save(fig: Figure, stem: Path) -> dict[str, Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    paths = {}
    # No creation date in the PDF: the same records give the same bytes, so a rebuilt committed figure is no diff.
    metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None}}
    for ext in ("png", "pdf"):
        paths[f"plots/{stem.name}.{ext}"] = stem.parent / f"{stem.name}.{ext}"
        fig.savefig(paths[f"plots/{stem.name}.{ext}"], dpi=120, metadata=metadata[ext])
    return paths


def convergence_figure(spec: Any, cells: dict, column: Any) -> Figure | None:
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    train, valid = fig.subplots(1, 2)
    curve = lambda name: lambda r: [(p["step"], p.get("loss")) for p in r.curves.get(name, [])]  # noqa: E731
    drawn = _draw(train, spec, cells, column, curve("train_loss")) | _draw(valid, spec, cells, column, curve("valid"))
    if not drawn:
        return None
    for ax, what in ((train, "train loss (per epoch)"), (valid, "valid loss")):
        ax.set(xlabel="training step", ylabel=what, title=f"{column.label}: {what}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{spec.title} — {column.label}, mean ± std over seeds", fontsize=9)
    return fig


def _site_average(stat: str) -> Callable[[Any], list[tuple[float, float]]]:
    def points(record: Any) -> list[tuple[float, float]]:
        return [(entry["step"], statistics.fmean(abs(s[stat]) for s in entry["sites"].values()))
                for entry in record.extra.get("grad_stats", []) if entry.get("sites")]

    return points


def grad_stats_figure(spec: Any, cells: dict, column: Any) -> Figure | None:
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    mean_ax, var_ax = fig.subplots(1, 2)
    if not _draw(mean_ax, spec, cells, column, _site_average("mean")):
        return None
    _draw(var_ax, spec, cells, column, _site_average("var"))
    for ax in (mean_ax, var_ax):
        if all(y > 0 for line in ax.get_lines() for y in line.get_ydata()):
            ax.set_yscale("log")
    for ax, what in ((mean_ax, "|mean| of ∂ℓ/∂x"), (var_ax, "variance of ∂ℓ/∂x")):
        ax.set(xlabel="training step", ylabel=what, title=f"{column.label}: {what} at the norm inputs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{spec.title} — {column.label}: gradient at the norm inputs, averaged over norm sites; "
                 "mean ± std over seeds", fontsize=9)
    return fig


def write_plots(spec: Any, cells: dict, out_dir: Path) -> dict[str, Path]:
    """Every figure the records allow, for every column; {"plots/<file>": path}."""
    paths = {}
    for column in spec.columns:
        name = re.sub(r"[^\w.=,-]+", "_", column.key)
        for kind, figure in (("convergence", convergence_figure), ("grad_stats", grad_stats_figure)):
            if (fig := figure(spec, cells, column)) is not None:
                paths.update(_save(fig, Path(out_dir) / f"{name}-{kind}"))
    return paths
