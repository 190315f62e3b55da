"""Welch's t-test against the textbook formulas, computed here by hand (no scipy), and the cases with no test."""
import math

import pytest

from normexp.analysis.stats import Comparison, describe, legend, mark, welch


def t_sf_two_sided(t: float, df: float, steps: int = 20000) -> float:
    """2·P(T > |t|) for Student's t with ``df`` degrees of freedom: 1 − 2·∫₀^|t| pdf, by Simpson's rule."""
    c = math.gamma((df + 1) / 2) / (math.sqrt(df * math.pi) * math.gamma(df / 2))
    pdf = lambda x: c * (1 + x * x / df) ** (-(df + 1) / 2)  # noqa: E731
    h = abs(t) / steps
    area = pdf(0) + pdf(abs(t)) + sum((4 if i % 2 else 2) * pdf(i * h) for i in range(1, steps))
    return 1 - 2 * area * h / 3


def hand_welch(a, b):
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    var = lambda xs: sum((x - mean(xs)) ** 2 for x in xs) / (len(xs) - 1)  # noqa: E731
    va, vb = var(a) / len(a), var(b) / len(b)
    t = (mean(a) - mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return mean(a) - mean(b), t, df, t_sf_two_sided(t, df)


@pytest.mark.parametrize("a, b", [
    ([1.0, 2.0, 4.0], [3.0, 5.0, 6.5, 8.0]),  # unequal sizes and variances
    ([35.4, 35.5, 35.6], [35.9, 36.0, 36.1]),  # three seeds each, a clear difference
    ([99.10, 99.14], [99.13, 99.09, 99.20]),  # n=2 against n=3, no real difference
])
def test_welch_matches_the_hand_computed_t_df_and_p(a, b):
    diff, t, df, p = hand_welch(a, b)
    got = welch(a, b)
    assert got.untested == ""
    assert got.diff == pytest.approx(diff) and got.t == pytest.approx(t) and got.df == pytest.approx(df)
    assert got.p == pytest.approx(p, abs=1e-6)


def test_a_known_value():
    # a = [1, 2, 4], b = [3, 5, 6.5, 8]: means 7/3 and 5.625, s²/n = 7/9 and 1.140625 → t = −3.2917 / 1.38507 = −2.3765,
    # df = 1.918403² / ((7/9)² / 2 + 1.140625² / 3) = 4.9994, two-sided p (t table, 5 df) just above 0.05
    got = welch([1.0, 2.0, 4.0], [3.0, 5.0, 6.5, 8.0])
    assert got.t == pytest.approx(-2.3765, abs=1e-4) and got.df == pytest.approx(4.9994, abs=1e-4)
    assert 0.05 < got.p < 0.07 and not got.significant(0.05) and got.significant(0.1)


def test_no_test_without_a_variance_to_estimate():
    assert welch([], [1.0, 2.0]) == Comparison(untested="no values")
    one = welch([3.0], [1.0, 2.0])
    assert one.p is None and one.untested == "n<2" and one.diff == pytest.approx(1.5)
    flat = welch([2.0, 2.0, 2.0], [1.0, 1.0])
    assert flat.p is None and flat.untested == "no spread" and flat.diff == 1.0
    half = welch([2.0, 2.0, 2.0], [1.0, 1.5])  # one side without spread still has a variance estimate
    assert half.p is not None and half.untested == ""


def test_mark_describe_and_legend():
    significant, not_significant = welch([1.0, 1.1, 0.9], [2.0, 2.1, 1.9]), welch([1.0, 2.0], [1.5, 2.5])
    assert significant.p < 0.001 and mark(significant) == "*" and describe(significant) == "p<0.001"
    assert mark(not_significant) == "" and describe(not_significant) == f"p={not_significant.p:.2g}"
    assert mark(None) == "" and mark(welch([1.0], [2.0])) == ""
    assert describe(welch([1.0], [2.0])) == "untested: n<2"
    assert mark(Comparison(p=0.03), alpha=0.01) == "" and mark(Comparison(p=0.003), alpha=0.01) == "*"
    assert legend("LayerNorm").startswith("* differs from LayerNorm (Welch's t-test")
    assert "no baseline row" in legend(None)
