"""The paper presets' fidelity choices, as Hydra composes them (each with its source in the preset's comment)."""
import pytest
from hydra import compose, initialize_config_dir

from normexp.cli import conf_dir
from normexp.cli.config import register_configs


def composed(*overrides: str):
    register_configs()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("experiment, key, value", [
    ("adanorm/enwik8", "model.norm_gain_std", 0.02),     # Transformer-XL train.py: LayerNorm weight ~ N(1, init_std)
    ("tiny/enwik8", "model.norm_gain_std", 0.0),
    ("adanorm/ptb", "model.activation", "cube"),         # Chen & Manning 2014
    ("tiny/ptb", "model.activation", "relu"),
    ("adanorm/iwslt14_deen", "model.norm_sites", "all"),  # the paper: every norm
    ("adanorm/iwslt14_deen_released", "model.norm_sites", "final"),  # lancopku/AdaNorm's fork
])
def test_paper_presets_fidelity_choices(experiment, key, value):
    cfg = composed(f"experiment={experiment}")
    group, leaf = key.split(".")
    assert cfg[group][leaf] == value


def test_batchnorm_variance_defaults_to_torchs_biased_and_is_an_option():
    assert composed("norm=batchnorm").norm.unbiased is False
    assert composed("norm=batchnorm", "norm.unbiased=true").norm.unbiased is True
