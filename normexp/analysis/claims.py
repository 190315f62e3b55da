"""A paper's claims, checked per column against our cells: holds / fails / not run, with the paper's own verdict beside.

Claims live in the table spec (``claims:``), one of three kinds:
- ``compare``: row ``a`` against row ``b`` with ``relation`` (``>``, ``>=``, ``<``, ``<=``) in "better than" terms, so
  a column where lower is better (bpc) flips the numbers. ``>`` holds only on a significant difference (Welch's t-test
  at the table's alpha); ``>=`` fails only on a significant one. Where no test is possible (n < 2, no spread) the means
  decide, and the detail says "untested". A row whose every run diverged is worse than any row that trained, and of
  two rows that trained, the one whose runs diverged more often is the worse.
- ``diverges``: every run of ``norm`` in the column diverged.
- ``overfits``: ``a`` ends with a lower train loss and a higher valid loss than ``b`` (means over seeds of the last
  recorded values; the paper's convergence figures). The paper's verdict comes from the claim's ``paper`` text.
- ``across``: one row (``norm``) in two columns (``columns: [first, second]``, by key or label) compared as
  ``compare`` compares two rows: the first column's cell ``relation`` the second's, e.g. BatchNorm at B = 4 "<" (worse
  than) BatchNorm at B = 128. The two columns must agree on which direction is better.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, replace
from typing import Any, Optional

from normexp.analysis.stats import ALPHA, describe, welch

KINDS = ("compare", "diverges", "overfits", "across")
RELATIONS = (">", ">=", "<", "<=")
HOLDS, FAILS, NOT_RUN = "holds", "fails", "not run"


@dataclass
class ClaimSpec:
    text: str
    kind: str = "compare"
    a: Optional[str] = None  # compare / overfits: a norm (row)
    b: Optional[str] = None
    relation: str = ">="
    norm: Optional[str] = None  # diverges: the norm that should diverge
    columns: Optional[list[str]] = None  # column keys or task names; null: every column of the table
    column: Optional[str] = None  # shorthand for one column
    paper: Optional[str] = None  # the paper's verdict where its table cannot give one (a figure's claim)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"claim {self.text!r}: kind={self.kind!r} is not valid: choose one of {', '.join(KINDS)}")
        if self.relation not in RELATIONS:
            raise ValueError(f"claim {self.text!r}: relation={self.relation!r} is not valid: choose one of "
                             f"{' '.join(RELATIONS)}")
        needed = ("norm",) if self.kind in ("diverges", "across") else ("a", "b")
        if missing := [k for k in needed if not getattr(self, k)]:
            raise ValueError(f"claim {self.text!r} of kind {self.kind} needs {' and '.join(missing)}")
        if self.kind == "across" and len(self.columns or []) != 2:
            raise ValueError(f"claim {self.text!r} of kind across needs columns: [first, second] (two columns)")


@dataclass
class Verdict:
    column: str  # the column's label
    ours: str  # holds | fails | not run
    detail: str
    paper: str  # holds | fails | – (the paper has no verdict here)


def evaluate(claim: ClaimSpec, spec: Any, cells: dict, alpha: float = ALPHA) -> list[Verdict]:
    rows = {r.key for r in spec.rows}
    if unknown := sorted({n for n in (claim.a, claim.b, claim.norm) if n} - rows):
        raise ValueError(f"claim {claim.text!r} names {unknown}, not rows of table {spec.name}: use one of {sorted(rows)}")
    if claim.kind == "across":
        return [_across(claim, spec, cells, alpha)]
    wanted = claim.columns or ([claim.column] if claim.column else None)
    columns = [c for c in spec.columns if wanted is None or c.key in wanted or c.task in wanted]
    if wanted and (unknown := sorted(set(wanted) - {c.key for c in columns} - {c.task for c in columns})):
        raise ValueError(f"claim {claim.text!r} names columns {unknown} not in table {spec.name}")
    out = []
    for c in columns:
        if claim.kind == "diverges":
            out.append(_diverges(cells[claim.norm, c.key], c.label))
        elif claim.kind == "overfits":
            out.append(_overfits(cells[claim.a, c.key], cells[claim.b, c.key], c.label, claim.paper))
        else:
            out.append(_compare(cells[claim.a, c.key], cells[claim.b, c.key], claim.relation, c, alpha))
        if claim.paper and claim.kind != "overfits":
            out[-1].paper = claim.paper
    return out


def _decide(better: float, evidence: bool, relation: str) -> str:
    """``better`` > 0: a is better than b. ``evidence``: the difference is significant (or could not be tested)."""
    better = better if relation.startswith(">") else -better
    if relation in (">", "<"):
        return HOLDS if better > 0 and evidence else FAILS
    return FAILS if better < 0 and evidence else HOLDS


def _compare(a, b, relation: str, column, alpha: float) -> Verdict:
    sign = 1 if column.higher_is_better else -1
    def show(cell) -> str:  # a partly diverged cell is compared on the seeds that trained, and says so
        if not cell.values:
            return "Diverge"
        return f"{cell.mean:.{column.digits}f}" + (f" [+{cell.diverged} diverged]" if cell.diverged else "")

    paper = _paper_verdict(_paper_number(a.paper), _paper_number(b.paper), relation, sign)
    if not (a.values or a.diverged) or not (b.values or b.diverged):
        return Verdict(column.label, NOT_RUN, "", paper)
    rate_a, rate_b = (c.diverged / (c.diverged + c.n) for c in (a, b))
    if a.values and b.values and rate_a != rate_b:  # diverging more often is worse, whatever the seeds that trained
        better = math.inf if rate_a < rate_b else -math.inf
        return Verdict(column.label, _decide(better, True, relation), f"{show(a)} vs {show(b)}, divergence decides", paper)
    if a.values and b.values:
        comparison = welch(a.values, b.values)
        evidence = comparison.p is None or comparison.significant(alpha)
        ours = _decide(sign * comparison.diff, evidence, relation)
        return Verdict(column.label, ours, f"{show(a)} vs {show(b)}, {describe(comparison)}", paper)
    better = 0.0 if not a.values and not b.values else (math.inf if a.values else -math.inf)  # a diverged run: worst
    return Verdict(column.label, _decide(better, True, relation), f"{show(a)} vs {show(b)}", paper)


def _across(claim: ClaimSpec, spec: Any, cells: dict, alpha: float) -> Verdict:
    """One row in two columns: the first column's cell against the second's, as `_compare` compares two rows."""
    def column(name: str):
        found = [c for c in spec.columns if name in (c.key, c.label)]
        if len(found) != 1:
            raise ValueError(f"claim {claim.text!r}: column {name!r} names {len(found)} columns of table {spec.name}: "
                             f"use a key or a label of one of {[c.label for c in spec.columns]}")
        return found[0]

    first, second = (column(name) for name in claim.columns)
    if first.higher_is_better != second.higher_is_better:
        raise ValueError(f"claim {claim.text!r}: columns {first.label} and {second.label} disagree on which direction "
                         "is better")
    both = replace(first, label=f"{first.label} vs {second.label}")
    verdict = _compare(cells[claim.norm, first.key], cells[claim.norm, second.key], claim.relation, both, alpha)
    verdict.paper = claim.paper or "–"  # the paper's numbers are per row; its verdict across columns is the claim's text
    return verdict


def _paper_number(value: Any) -> float | str | None:
    """A number, "Diverge", or the leading number of a text such as "231±0.04 (6.9%)"; None when there is none."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        if value.strip().lower().startswith("diverge"):
            return "Diverge"
        if found := re.match(r"\s*(-?\d+(?:\.\d+)?)", value):
            return float(found.group(1))
    return None


def _paper_verdict(a, b, relation: str, sign: int) -> str:
    if a is None or b is None:
        return "–"
    if isinstance(a, float) and isinstance(b, float):
        return _decide(sign * (a - b), True, relation)
    return _decide(0.0 if a == b else (math.inf if isinstance(a, float) else -math.inf), True, relation)


def _diverges(cell, label: str) -> Verdict:
    paper = {"Diverge": HOLDS, None: "–"}.get(_paper_number(cell.paper), FAILS)
    if not cell.values and not cell.diverged:
        return Verdict(label, NOT_RUN, "", paper)
    detail = f"{cell.diverged} of {cell.diverged + cell.n} runs diverged"
    return Verdict(label, HOLDS if cell.diverged and not cell.values else FAILS, detail, paper)


def _last_losses(cell) -> tuple[list[float], list[float]]:
    done = [r for r in cell.records if r.status == "completed" and r.curves.get("train_loss") and r.curves.get("valid")]
    return [r.curves["train_loss"][-1]["loss"] for r in done], [r.curves["valid"][-1]["loss"] for r in done]


def _overfits(a, b, label: str, paper: Optional[str]) -> Verdict:
    (train_a, valid_a), (train_b, valid_b) = _last_losses(a), _last_losses(b)
    if not train_a or not train_b:
        return Verdict(label, NOT_RUN, "", paper or "–")
    ta, tb, va, vb = map(statistics.fmean, (train_a, train_b, valid_a, valid_b))
    ours = HOLDS if ta < tb and va > vb else FAILS
    return Verdict(label, ours, f"train {ta:.3f} vs {tb:.3f}, valid {va:.3f} vs {vb:.3f}", paper or "–")


def claim_lines(spec: Any, cells: dict) -> list[str]:
    """One line per claim: the count over columns, then each column's verdict with the paper's in brackets."""
    lines = []
    for claim in spec.claims:
        verdicts = evaluate(claim, spec, cells, spec.alpha)
        count = lambda what, attr="ours": sum(getattr(v, attr) == what for v in verdicts)  # noqa: E731
        ran = len(verdicts) - count(NOT_RUN)
        judged = len(verdicts) - count("–", "paper")
        summary = f"holds on {count(HOLDS)} of {ran} columns run" if ran else f"not run on any of {len(verdicts)} columns"
        if 0 < ran < len(verdicts):
            summary += f", not run on {count(NOT_RUN)}"
        if judged:
            summary += f" (paper: holds on {count(HOLDS, 'paper')} of {judged})"
        parts = [f"{v.column}: {v.ours}" + (f" ({v.detail})" if v.detail else "") + f" [{v.paper}]" for v in verdicts]
        lines.append(f"{claim.text} — {summary}. " + "; ".join(parts))
    return lines


def claims_heading(alpha: float) -> str:
    return (f"Claims, ours per column [the paper's verdict from its own numbers]. Welch's t-test at α = {alpha:g}: "
            "\">\" holds only on a significant difference, \"≥\" fails only on one; where no test is possible (n < 2 or no "
            "spread) the means decide (\"untested\"):")
