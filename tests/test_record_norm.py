"""A run record says exactly which norm ran: the resolved options, not only the preset's name."""
from normexp.norms import NormConfig, resolved_options
from tests.conftest import only_record, run_cli

SMALL = ("task.train_size=300", "task.valid_size=100", "task.test_size=100", "trainer.max_epochs=1",
         "trainer.progress=false")


def test_the_record_holds_the_resolved_norm(tmp_path):
    run_cli(*SMALL, "norm=adanorm_official", "norm.C=1.5", f"out_root={tmp_path}")
    norm = only_record(tmp_path)["extra"]["norm"]
    assert norm == resolved_options(NormConfig(name="adanorm", convention="official", C=1.5, k=0.1))
    # the released code's statistics, spelled out: torch.std (unbiased), eps added to the std, C from the override
    assert {k: norm[k] for k in ("name", "C", "k", "unbiased", "eps", "eps_mode", "convention", "gain", "bias")} == \
        {"name": "adanorm", "C": 1.5, "k": 0.1, "unbiased": True, "eps": 1e-5, "eps_mode": "outside",
         "convention": "official", "gain": False, "bias": False}


def test_resolved_options_tell_presets_of_one_name_apart():
    paper, official = (resolved_options(NormConfig(name="adanorm", **kw)) for kw in ({}, {"convention": "official", "C": 2.0}))
    assert (paper["C"], paper["unbiased"], paper["eps_mode"]) == (1.0, False, "inside")
    assert (official["C"], official["unbiased"], official["eps_mode"]) == (2.0, True, "outside")
