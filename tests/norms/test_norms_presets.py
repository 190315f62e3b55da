"""conf/norm presets: well-formed, build, and reproduce the official codebases' formulas exactly."""
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from normexp.norms import VARIANTS, NormConfig, norm_factory

CONF = Path(__file__).resolve().parents[2] / "conf" / "norm"


def preset(name: str) -> NormConfig:
    raw = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    assert raw.pop("defaults") == ["norm_schema", "_self_"]
    # The structured merge is what Hydra does with the schema: types are checked here too.
    merged = OmegaConf.merge(OmegaConf.structured(NormConfig), raw)
    return NormConfig(**OmegaConf.to_container(merged))


# custom.yaml names a user's class, not a variant: tests/norms/test_norms_plugin.py
ALL = sorted(p.stem for p in CONF.glob("*.yaml") if p.stem != "custom")


def test_one_file_per_variant():
    assert set(VARIANTS) <= set(ALL)
    for stem in ALL:
        assert stem in VARIANTS or stem.endswith("_official"), stem


@pytest.mark.parametrize("stem", ALL)
def test_preset_builds(stem):
    cfg = preset(stem)
    assert cfg.name == stem.removesuffix("_official")
    assert (cfg.convention == "official") == stem.endswith("_official")
    assert (CONF / f"{stem}.yaml").read_text().startswith("# ")
    m = norm_factory(cfg)(64)
    assert m(torch.randn(2, 3, 64)).shape == (2, 3, 64)


# --- The official code, transcribed (lancopku/AdaNorm machine translation/fairseq/modules/layer_norm.py
# LayerNormImpl.forward, modes 'nowb' and 'adanorm'; bzhangGo/rmsnorm rmsnorm_torch.py RMSNorm.forward).

def lancopku_nowb(input, eps=1e-5, mean_detach=False, std_detach=False):
    mean = input.mean(dim=-1, keepdim=True)
    std = input.std(dim=-1, keepdim=True)
    if mean_detach:
        mean = mean.detach()
    if std_detach:
        std = std.detach()
    return (input - mean) / (std + eps)


def lancopku_adanorm(input, adanorm_scale, eps=1e-5):
    mean = input.mean(-1, keepdim=True)
    std = input.std(-1, keepdim=True)
    input = input - mean
    mean = input.mean(-1, keepdim=True)
    graNorm = (1 / 10 * (input - mean) / (std + eps)).detach()
    input_norm = (input - input * graNorm) / (std + eps)
    return input_norm * adanorm_scale


def bzhang_rmsnorm(x, scale, d, p=-1.0, eps=1e-8):
    if p < 0.0 or p > 1.0:
        norm_x = x.norm(2, dim=-1, keepdim=True)
        d_x = d
    else:
        partial_size = int(d * p)
        partial_x, _ = torch.split(x, [partial_size, d - partial_size], dim=-1)
        norm_x = partial_x.norm(2, dim=-1, keepdim=True)
        d_x = partial_size
    rms_x = norm_x * d_x ** (-1.0 / 2)
    return scale * (x / (rms_x + eps))


OFFICIAL = {
    "layernorm_simple_official": lambda x, m: lancopku_nowb(x),
    "detachnorm_official": lambda x, m: lancopku_nowb(x, mean_detach=True, std_detach=True),
    "detach_mean_official": lambda x, m: lancopku_nowb(x, mean_detach=True),
    "detach_var_official": lambda x, m: lancopku_nowb(x, std_detach=True),
    "adanorm_official": lambda x, m: lancopku_adanorm(x, adanorm_scale=2.0),
    "rmsnorm_official": lambda x, m: bzhang_rmsnorm(x, m.weight, x.shape[-1]),
    "prmsnorm_official": lambda x, m: bzhang_rmsnorm(x, m.weight, x.shape[-1], p=0.0625),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("stem", sorted(OFFICIAL))
def test_official_presets_reproduce_official_code(stem, dtype):
    torch.manual_seed(5)
    # H = 40: int(40 * 0.0625) = 2 elements (official floor) where the paper's ceil gives 3.
    H = 40
    m = norm_factory(preset(stem))(H).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(0.5, 1.5)
    x = (torch.randn(2, 5, H) * 3 + 1).to(dtype)
    g = torch.randn_like(x)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = m(xa), OFFICIAL[stem](xb, m)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ya, yb, **tol)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, **tol)
