"""Hyper-parameters chosen as the papers chose them: on the validation set, per column.

A table row may declare a grid (``grid: {norm.C: [0.5, 1, 2]}``). Its cell in each column then holds the runs of every
grid point; `choose` names the point with the best mean validation score and the table (``tables.chosen_cell``) keeps
only its runs, reporting test there.
The score of a run is its best valid value of the task's primary metric (``best_valid[primary_metric]``, direction
``higher_is_better``), i.e. what the trainer selected its checkpoint on. Points are compared on the seeds that every point
has finished, so that extra seeds run later at the winning point (5 instead of 3) do not change the choice; a point
with diverged runs ranks below every point without. Ties go to the point listed first.
"""
from __future__ import annotations

import statistics
from typing import Any

GridPoint = tuple  # the grid's values, in the order of its keys
_OFF = object()  # a value not on the grid


def config_value(record, dotted: str) -> Any:
    """A record's value for a dotted config key. ``norm.*`` keys read the resolved norm (``extra.norm``) when the
    record has it, so that ``norm.C: 1`` also matches a run whose preset left C at the variant's default."""
    if dotted.startswith("norm.") and isinstance(record.extra.get("norm"), dict):
        resolved = record.extra["norm"]
        if dotted[5:] in resolved:
            return resolved[dotted[5:]]
    value = record.config
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def grid_points(grid: dict[str, list]) -> list[GridPoint]:
    """Every combination of the grid's values (the first key varies slowest)."""
    points: list[GridPoint] = [()]
    for values in grid.values():
        points = [p + (v,) for p in points for v in values]
    return points


def point_of(record, grid: dict[str, list]) -> GridPoint | None:
    """The grid point a record ran at, or None when one of its values is off the grid."""
    point = []
    for key, values in grid.items():
        value = config_value(record, key)
        match = next((v for v in values if v == value), _OFF)
        if match is _OFF:
            return None
        point.append(match)
    return tuple(point)


def _valid_score(record) -> float | None:
    value = record.best_valid.get(record.primary_metric) if record.status == "completed" else None
    return None if value is None else (float(value) if record.higher_is_better else -float(value))


def valid_scores(records: list, grid: dict[str, list]) -> dict[GridPoint, float | None]:
    """Grid point → mean valid score (higher is better) over the seeds every finished point has; None: not comparable
    (no finished run, or diverged runs)."""
    by_point: dict[GridPoint, dict[int, Any]] = {}
    for rec in records:
        if rec.status in ("completed", "diverged") and (point := point_of(rec, grid)) is not None:
            by_point.setdefault(point, {})[rec.seed] = rec
    if not by_point:
        return {}
    common = set.intersection(*(set(runs) for runs in by_point.values()))
    scores = {}
    for point, runs in by_point.items():
        values = [_valid_score(runs[s]) for s in sorted(common)]
        scores[point] = None if not values or any(v is None for v in values) else statistics.fmean(values)
    return scores


def choose(records: list, grid: dict[str, list]) -> GridPoint | None:
    """The grid point with the best mean valid score; a point with a diverged run only if every point has one."""
    scores = valid_scores(records, grid)
    ranked = [p for p in grid_points(grid) if p in scores]
    if not ranked:
        return None
    scored = [p for p in ranked if scores[p] is not None]
    return max(scored, key=lambda p: scores[p]) if scored else ranked[0]


def point_text(grid: dict[str, list], point: GridPoint) -> str:
    """``C = 2`` for the point (2,) of ``{norm.C: [...]}``: the last part of each key, the value as written."""
    return ", ".join(f"{key.rsplit('.', 1)[-1]} = {value:g}" if isinstance(value, (int, float)) and not
                     isinstance(value, bool) else f"{key.rsplit('.', 1)[-1]} = {value}" for key, value in zip(grid, point))
