"""``model.norm_sites``: the paper's reading (every norm site) against lancopku/AdaNorm's released fork (the 2 final norms).

The models are built from the experiment presets as composed by Hydra, through ``job.build``'s counting factory, so the
count is what a run's record would say in ``extra.norm_sites``."""
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from normexp.cli import conf_dir
from normexp.cli.config import register_configs
from normexp.cli.train import forget_fairseq_configs
from normexp.models.fairseq_transformer import FairseqTransformerConfig, build_fairseq_transformer
from normexp.norms import norm_factory
from normexp.norms.variants import NORM_TYPES


def composed(experiment: str):
    register_configs()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=[f"experiment={experiment}"]))


def build(model_cfg, norm_cfg):
    from fairseq.data import Dictionary

    vocab = Dictionary()
    for i in range(40):
        vocab.add_symbol(f"w{i}")
    build_site, sites = norm_factory(norm_cfg), []

    def norm(dim):  # as engine/job.py's build counts the sites for the record
        sites.append(build_site(dim))
        return sites[-1]

    try:
        model = build_fairseq_transformer(model_cfg, vocab, vocab, norm)
    finally:
        forget_fairseq_configs()
    return model, sites


@pytest.mark.parametrize("experiment, swapped, layernorms", [("adanorm/iwslt14_deen_released", 2, 30),
                                                             ("adanorm/iwslt14_deen", 32, 0)])
def test_released_code_swaps_the_two_final_norms_the_paper_all_32(experiment, swapped, layernorms):
    cfg = composed(experiment)
    model, sites = build(cfg.model, cfg.norm)
    assert len(sites) == swapped
    assert sum(isinstance(m, NORM_TYPES) for m in model.modules()) == swapped
    assert sum(type(m).__name__.endswith("LayerNorm") for m in model.modules()) == layernorms
    if swapped == 2:
        assert model.encoder.layer_norm is sites[0] and model.decoder.layer_norm is sites[1]
        assert (sites[0].spec.C, sites[0].spec.convention, sites[0].spec.unbiased) == (2.0, "official", True)
        assert isinstance(model.encoder.layers[0].self_attn_layer_norm, nn.LayerNorm)


def test_final_norm_sites_need_pre_norm():
    cfg = FairseqTransformerConfig(norm_sites="final", encoder_normalize_before=False, decoder_normalize_before=False,
                                   encoder_layers=1, decoder_layers=1)
    with pytest.raises(ValueError, match="model.norm_sites=final .* pre-norm mode"):
        build(cfg, composed("adanorm/iwslt14_deen_released").norm)
    with pytest.raises(ValueError, match="model.norm_sites='last' is not valid"):
        build(FairseqTransformerConfig(norm_sites="last"), composed("adanorm/iwslt14_deen_released").norm)
