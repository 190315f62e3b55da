"""Is a difference between two cells more than seed noise? Welch's t-test (two-sided, unequal variances).

Seeds are few (3 by default), so the test is weak: a missing mark means "not shown", not "equal". With fewer than two
values on either side, or no spread on both, there is nothing to estimate a variance from and no test is made; the
result says why instead of pretending a p-value.
"""
from __future__ import annotations

import statistics
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence

ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """a against b: the difference of means and, where a test was possible, Welch's t, its degrees of freedom and p."""

    diff: Optional[float] = None  # mean(a) - mean(b)
    t: Optional[float] = None
    df: Optional[float] = None
    p: Optional[float] = None
    untested: str = ""  # why no test was made ("" when tested)

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p is not None and self.p < alpha


def welch(a: Sequence[float], b: Sequence[float]) -> Comparison:
    if not a or not b:
        return Comparison(untested="no values")
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return Comparison(diff=diff, untested="n<2")
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return Comparison(diff=diff, untested="no spread")
    from scipy.stats import ttest_ind  # scipy costs ~0.5 s to import; only tables that test need it

    with warnings.catch_warnings():  # scipy warns of "precision loss" on a side of identical values: exact, not lossy
        warnings.simplefilter("ignore", RuntimeWarning)
        result = ttest_ind(a, b, equal_var=False)
    return Comparison(diff=diff, t=float(result.statistic), df=float(result.df), p=float(result.pvalue))


def mark(comparison: Optional[Comparison], alpha: float = ALPHA) -> str:
    """The cell suffix: '*' where the difference to the baseline is significant at ``alpha``."""
    return "*" if comparison is not None and comparison.significant(alpha) else ""


def describe(comparison: Comparison) -> str:
    """'p=0.041' or why there was no test."""
    if comparison.p is None:
        return f"untested: {comparison.untested}"
    return f"p={comparison.p:.2g}" if comparison.p >= 1e-3 else "p<0.001"


def legend(baseline_label: Optional[str], alpha: float = ALPHA) -> str:
    if baseline_label is None:
        return "No significance marks: the table has no baseline row."
    return (f"* differs from {baseline_label} (Welch's t-test over seeds, two-sided p < {alpha:g}); no test where either "
            "cell has fewer than 2 values or neither has any spread.")
