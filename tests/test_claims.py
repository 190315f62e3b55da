"""The paper's claims on constructed records: holds / fails / not run per column, direction-aware, the paper's verdict."""
import pytest

from normexp.analysis.claims import ClaimSpec, claim_lines, evaluate
from normexp.cli.reproduce import load_table
from normexp.analysis.stats import welch
from normexp.analysis.tables import ColumnSpec, RowSpec, TableSpec, build_cells
from tests.records import make_record

LN_DEEN, ADA_DEEN = [35.4, 35.5, 35.6], [35.9, 36.0, 36.1]
LN_MNIST, ADA_MNIST = [99.10, 99.12, 99.14], [99.00, 99.02, 99.04]
LN_RT, ADA_RT = [77.0, 77.4, 77.2], [77.1, 76.9, 77.3]


def seeds(task, norm, values, metric="accuracy", **kw):
    return [make_record(task, norm, s, v, metric=metric, **kw) for s, v in enumerate(values, 1)]


def table3_records():
    return [*seeds("iwslt14_deen", "layernorm", LN_DEEN, "bleu", train_losses=(3.0, 1.8), valid_losses=(3.1, 2.6)),
            *seeds("iwslt14_deen", "adanorm", ADA_DEEN, "bleu", train_losses=(3.0, 2.0), valid_losses=(3.1, 2.5)),
            *seeds("mnist", "layernorm", LN_MNIST), *seeds("mnist", "adanorm", ADA_MNIST),
            *seeds("rt", "layernorm", LN_RT), *seeds("rt", "adanorm", ADA_RT),
            *seeds("enwik8", "layernorm", [1.30], "bpc"), *seeds("enwik8", "adanorm", [1.20], "bpc"),
            *seeds("wmt14_ende", "layernorm", [27.1, 27.3], "bleu"),
            *[make_record("wmt14_ende", "none", s, status="diverged", metric="bleu") for s in (1, 2, 3)]]


def p(a, b):
    return f"p={welch(a, b).p:.2g}"


def test_table3_claims_lines():
    spec = load_table("adanorm_table3")
    lines = claim_lines(spec, build_cells(spec, table3_records()))
    assert lines[0] == (
        "AdaNorm ≥ LayerNorm — holds on 3 of 4 columns run, not run on 4 (paper: holds on 8 of 8). "
        f"En-De: not run [holds]; De-En: holds (36.0 vs 35.5, {p(ADA_DEEN, LN_DEEN)}) [holds]; En-Vi: not run [holds]; "
        "Enwiki8: holds (1.20 vs 1.30, untested: n<2) [holds]; RT: not run [holds]; SST5: not run [holds]; "
        f"MNIST: fails (99.02 vs 99.12, {p(ADA_MNIST, LN_MNIST)}) [holds]; PTB: not run [holds]"
    ).replace("RT: not run", f"RT: holds (77.10 vs 77.20, {p(ADA_RT, LN_RT)})")
    assert lines[1] == ("w/o Norm diverges on En-De — holds on 1 of 1 columns run (paper: holds on 1 of 1). "
                        "En-De: holds (3 of 3 runs diverged) [holds]")
    assert lines[2] == ("LayerNorm: lower train loss, higher valid loss than AdaNorm (over-fitting) — holds on 1 of 1 "
                        "columns run, not run on 1 (paper: holds on 2 of 2). De-En: holds (train 1.800 vs 2.000, valid "
                        "2.600 vs 2.500) [holds]; PTB: not run [holds]")


def test_table2_claims_divergence_ties_and_strictness():
    spec = load_table("adanorm_table2")
    records = [*seeds("wmt14_ende", "layernorm_simple", [28.0, 28.2], "bleu"),
               *[make_record("wmt14_ende", n, s, status="diverged", metric="bleu")
                 for n in ("none", "detachnorm") for s in (1, 2)],
               *seeds("iwslt14_deen", "layernorm_simple", [35.5, 35.6, 35.4], "bleu"),  # better, but within noise
               *seeds("iwslt14_deen", "detachnorm", [35.45, 35.55, 35.35], "bleu"),
               *seeds("sst5", "detachnorm", [40.0, 40.2, 40.1]), *seeds("sst5", "none", [38.5, 38.6, 38.4])]
    cells = build_cells(spec, records)
    simple_vs_detach, detach_vs_none, none_diverges, detach_diverges = (
        {v.column: (v.ours, v.paper) for v in evaluate(c, spec, cells)} for c in spec.claims)
    assert simple_vs_detach["En-De"] == ("holds", "holds")  # a diverged row is worse than any that trained
    assert simple_vs_detach["De-En"] == ("fails", "holds")  # ">" needs a significant difference
    assert simple_vs_detach["SST5"] == ("not run", "holds")
    assert simple_vs_detach["MNIST"][1] == "fails" and simple_vs_detach["PTB"][1] == "fails"  # 99.09 < 99.10, 89.19 < 89.79
    assert detach_vs_none["En-De"] == ("holds", "holds")  # both diverged: a tie, and "≤" holds on a tie
    assert detach_vs_none["SST5"] == ("fails", "fails")  # DetachNorm significantly better than w/o Norm
    assert none_diverges == {"En-De": ("holds", "holds")} and detach_diverges == {"En-De": ("holds", "holds")}
    lines = claim_lines(spec, cells)
    assert lines[0].startswith("LayerNorm-simple > DetachNorm (the derivatives of mean and std matter) — holds on 1 of 2 "
                               "columns run, not run on 6 (paper: holds on 6 of 8). En-De: holds (28.1 vs Diverge) [holds]")
    assert "(paper: holds on 6 of 8)" in lines[1]


def test_nothing_run_and_partly_diverged_cells():
    spec = load_table("adanorm_table3")
    assert claim_lines(spec, build_cells(spec, []))[0].startswith(
        "AdaNorm ≥ LayerNorm — not run on any of 8 columns (paper: holds on 8 of 8). En-De: not run [holds]; De-En: ")
    records = [*seeds("wmt14_ende", "layernorm", [27.0, 27.2], "bleu"), *seeds("wmt14_ende", "adanorm", [27.1], "bleu"),
               make_record("wmt14_ende", "adanorm", 2, status="diverged", metric="bleu")]
    [ende, *_] = evaluate(spec.claims[0], spec, build_cells(spec, records))
    assert (ende.ours, ende.detail) == ("fails", "27.1 [+1 diverged] vs 27.1, divergence decides")


def tiny_spec(claims, higher_is_better=False):
    return TableSpec(name="t", title="t", rows=[RowSpec("layernorm", "LN"), RowSpec("rmsnorm", "RMS")],
                     columns=[ColumnSpec("enwik8", "Enwiki8", "bpc", higher_is_better=higher_is_better)],
                     paper={"layernorm": {"enwik8": 1.10}, "rmsnorm": {"enwik8": 1.05}}, claims=claims)


@pytest.mark.parametrize("relation, rms, ours, paper", [
    (">", [1.00, 1.01, 0.99], "holds", "holds"),  # lower bpc is better: significantly lower holds
    (">", [1.19, 1.21, 1.20], "fails", "holds"),
    (">=", [1.21, 1.19, 1.23], "holds", "holds"),  # worse by 0.01 within noise: "≥" still holds
    (">=", [1.30, 1.31, 1.29], "fails", "holds"),
    ("<", [1.30, 1.31, 1.29], "holds", "fails"),
    ("<=", [1.00, 1.01, 0.99], "fails", "fails"),
])
def test_compare_is_direction_aware(relation, rms, ours, paper):
    claim = ClaimSpec(text="RMSNorm vs LayerNorm", a="rmsnorm", b="layernorm", relation=relation)
    spec = tiny_spec([claim])
    records = [*seeds("enwik8", "layernorm", [1.19, 1.20, 1.21], "bpc"), *seeds("enwik8", "rmsnorm", rms, "bpc")]
    [verdict] = evaluate(claim, spec, build_cells(spec, records))
    assert (verdict.ours, verdict.paper) == (ours, paper)


def test_diverges_fails_when_a_seed_trains_and_reports_not_run_without_records():
    claim = ClaimSpec(text="RMSNorm diverges", kind="diverges", norm="rmsnorm")
    spec = tiny_spec([claim])
    records = [make_record("enwik8", "rmsnorm", 1, status="diverged", metric="bpc"),
               make_record("enwik8", "rmsnorm", 2, 1.3, metric="bpc")]
    [verdict] = evaluate(claim, spec, build_cells(spec, records))
    assert (verdict.ours, verdict.detail, verdict.paper) == ("fails", "1 of 2 runs diverged", "fails")
    [verdict] = evaluate(claim, spec, build_cells(spec, []))
    assert (verdict.ours, verdict.detail) == ("not run", "")
    failed_only = [make_record("enwik8", "rmsnorm", 1, status="failed", metric="bpc")]
    assert evaluate(claim, spec, build_cells(spec, failed_only))[0].ours == "not run"


def test_bad_claims_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="kind='better' is not valid: choose one of compare, diverges, overfits"):
        ClaimSpec(text="x", kind="better", a="a", b="b")
    with pytest.raises(ValueError, match="relation='=>' is not valid"):
        ClaimSpec(text="x", a="a", b="b", relation="=>")
    with pytest.raises(ValueError, match="needs norm"):
        ClaimSpec(text="x", kind="diverges")
    with pytest.raises(ValueError, match=r"names \['adanorm'\], not rows of table t"):
        evaluate(ClaimSpec(text="x", a="adanorm", b="layernorm"), tiny_spec([]), build_cells(tiny_spec([]), []))
    with pytest.raises(ValueError, match=r"names columns \['ptb'\] not in table t"):
        evaluate(ClaimSpec(text="x", a="rmsnorm", b="layernorm", columns=["ptb"]), tiny_spec([]),
                 build_cells(tiny_spec([]), []))


def test_one_norm_across_two_columns_batchnorm_at_B4_vs_B128():
    """Ba et al.'s batch-size claim, from the table's own spec: BatchNorm's error at B = 4 against its error at B = 128
    (lower is better), and LayerNorm's robustness, each one row in two columns."""
    spec = load_table("ln_paper_batch_size")
    b128, b4 = spec.columns[0], spec.columns[1]
    config = lambda batch: {"task": {"name": "mnist", "batch_size": batch, "permute_pixels": True},  # noqa: E731
                            "model": {"name": "mlp", "weight_init_mean": 0.0}}
    errors = {("batchnorm", 128): [2.0, 2.1, 1.9], ("batchnorm", 4): [4.0, 4.2, 4.1],
              ("layernorm", 128): [2.0, 2.1, 1.9], ("layernorm", 4): [2.1, 1.9, 2.0]}
    records = [make_record("mnist", norm, s, v, metric="error", config=config(batch))
               for (norm, batch), values in errors.items() for s, v in enumerate(values, 1)]
    for rec in records:
        rec.name = "ln_paper"
    cells = build_cells(spec, records)
    assert cells["batchnorm", b4.key].mean == pytest.approx(4.1)
    by_text = {c.text: c for c in spec.claims}
    [bn] = evaluate(by_text["BatchNorm is worse at batch size 4 than at 128"], spec, cells)
    assert (bn.column, bn.ours, bn.paper) == ("B=4 vs B=128", "holds", "holds")
    assert bn.detail == "4.10 vs 2.00, p<0.001"
    [ln] = evaluate(by_text["LayerNorm is no worse at batch size 4 than at 128"], spec, cells)
    assert (ln.ours, ln.detail) == ("holds", "2.00 vs 2.00, p=1")
    flipped = ClaimSpec("BatchNorm no worse at B=4", kind="across", norm="batchnorm", relation=">=",
                        columns=[b4.key, b128.label])  # a key or a label names a column
    assert evaluate(flipped, spec, cells)[0].ours == "fails"
    with pytest.raises(ValueError, match="kind across needs columns"):
        ClaimSpec("x", kind="across", norm="batchnorm", columns=["B=4"])
    with pytest.raises(ValueError, match="column 'B=2' names 0 columns"):
        evaluate(ClaimSpec("x", kind="across", norm="batchnorm", columns=["B=2", "B=4"]), spec, cells)
