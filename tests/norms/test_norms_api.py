"""build_norm / norm_factory contract: names, options, validation, shapes, dtypes."""
import pickle

import pytest
import torch

from normexp.norms import VARIANTS, NormConfig, build_norm, norm_factory, resolve

EXPECTED = ("none", "layernorm", "layernorm_simple", "detachnorm", "detach_mean", "detach_var",
            "adanorm", "rmsnorm", "prmsnorm", "batchnorm", "dyt", "scalenorm")


def test_variants():
    assert VARIANTS == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_any_leading_shape(name):
    m = build_norm(name, 16)
    for shape in [(16,) if name != "batchnorm" else (2, 16), (3, 16), (2, 3, 4, 16)]:
        x = torch.randn(*shape, requires_grad=True)
        y = m(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        y.sum().backward()
        assert torch.isfinite(x.grad).all()


def test_parameters_per_variant():
    def names(name, **o):
        return sorted(n for n, _ in build_norm(name, 8, **o).named_parameters())
    assert names("layernorm") == ["bias", "weight"]
    assert names("layernorm", bias=False) == ["weight"]
    for name in ["none", "layernorm_simple", "detachnorm", "detach_mean", "detach_var", "adanorm"]:
        assert names(name) == []
    assert names("rmsnorm") == ["bias", "weight"]  # paper Eq. 4 keeps b
    assert names("rmsnorm", convention="official") == ["weight"]
    assert names("rmsnorm", bias=False) == ["weight"]
    assert names("batchnorm") == ["bias", "weight"]
    ln = build_norm("layernorm", 8)
    assert (ln.weight == 1).all() and (ln.bias == 0).all()


def test_defaults_and_conventions():
    ada = resolve("adanorm")
    assert (ada.C, ada.k, ada.eps, ada.unbiased, ada.eps_mode) == (1.0, 0.1, 1e-5, False, "inside")
    off = resolve("adanorm", convention="official")
    assert (off.C, off.k, off.eps, off.unbiased, off.eps_mode) == (1.0, 0.1, 1e-5, True, "outside")
    lo, lp = resolve("layernorm", convention="official"), resolve("layernorm")
    assert (lo.eps, lo.unbiased, lo.eps_mode, lo.bias) == (lp.eps, lp.unbiased, lp.eps_mode, lp.bias)
    p = resolve("prmsnorm")
    assert p.p == 0.0625 and p.stat_count(512) == 32 and p.stat_count(40) == 3
    assert resolve("prmsnorm", convention="official").stat_count(40) == 2
    assert resolve("prmsnorm", p=0.07).stat_count(100) == 7  # not 8: 0.07 * 100 = 7.000000000000001
    r = resolve("rmsnorm", convention="official", eps=1e-6, eps_mode="inside", bias=True)
    assert (r.eps, r.eps_mode, r.bias) == (1e-6, "inside", True)  # explicit options win


@pytest.mark.parametrize("name, options, match", [
    ("layer_norm", {}, "valid names: none, layernorm"),
    ("adanorm", {"k": 0}, "C and k must be > 0"),
    ("adanorm", {"k": -0.1}, "C and k must be > 0"),
    ("adanorm", {"C": 0.0}, "C and k must be > 0"),
    ("prmsnorm", {"p": 0.0}, r"p must be in \(0, 1\]"),
    ("prmsnorm", {"p": 1.5}, r"p must be in \(0, 1\]"),
    ("rmsnorm", {"unbiased": True}, "valid options: eps, eps_mode, bias, convention"),
    ("rmsnorm", {"p": 0.5}, "does not take option"),
    ("layernorm_simple", {"C": 1.0}, "does not take option"),
    ("batchnorm", {"C": 2.0}, "valid options: eps, unbiased"),
    ("batchnorm", {"unbiased": 1}, "must be true or false"),
    ("layernorm", {"eps_mode": "between"}, "eps_mode must be one of"),
    ("layernorm", {"eps": -1.0}, "eps must be >= 0"),
    ("layernorm", {"unbiased": "yes"}, "must be true or false"),
    ("layernorm", {"convention": "fairseq"}, "convention must be one of"),
    ("adanorm", {"k": "0.1"}, "must be a finite number"),
])
def test_invalid_options(name, options, match):
    with pytest.raises(ValueError, match=match):
        build_norm(name, 64, **options)
    with pytest.raises(ValueError, match=match):  # eagerly, before any width is known
        norm_factory(NormConfig(name=name, **options))


@pytest.mark.parametrize("name, dim, options, match", [
    ("layernorm", 0, {}, "dim must be an integer >= 1"),
    ("none", -3, {}, "dim must be an integer >= 1"),
    ("batchnorm", 0, {}, "dim must be an integer >= 1"),
    ("rmsnorm", 2.0, {}, "dim must be an integer >= 1"),
    ("prmsnorm", 8, {}, r"p \* dim must be >= 1"),           # 0.0625 * 8 < 1
    ("prmsnorm", 10, {"p": 0.05}, r"valid p for this width: \[0.1, 1\]"),
    ("layernorm_simple", 1, {"unbiased": True}, "unbiased variance needs dim >= 2"),
])
def test_invalid_dims(name, dim, options, match):
    with pytest.raises(ValueError, match=match):
        build_norm(name, dim, **options)
    factory = norm_factory(NormConfig(name=name, **options))
    with pytest.raises(ValueError, match=match):
        factory(dim)


def test_wrong_width_input():
    with pytest.raises(ValueError, match="last dimension of 8"):
        build_norm("adanorm", 8)(torch.randn(2, 9))


def test_norm_factory_forwards_options_and_pickles():
    factory = norm_factory(NormConfig(name="adanorm", C=2.0, k=0.2, eps=1e-6, convention="official"))
    m = factory(32)
    assert (m.spec.C, m.spec.k, m.spec.eps, m.spec.unbiased) == (2.0, 0.2, 1e-6, True)
    assert factory(16).dim == 16
    assert pickle.loads(pickle.dumps(factory))(8).spec == factory(8).spec
    assert norm_factory(NormConfig())(4).spec.name == "layernorm"
    # Anything with NormConfig's attributes works, e.g. a Hydra/OmegaConf node.
    from omegaconf import OmegaConf
    node = OmegaConf.structured(NormConfig(name="prmsnorm", p=0.125))
    assert norm_factory(node)(64).spec.stat_count(64) == 8


def test_none_takes_and_ignores_eps():
    assert norm_factory(NormConfig(name="none", eps=1e-6))(4)(torch.ones(4)).eq(1).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_computes_in_float32(dtype):
    torch.manual_seed(0)
    x = torch.randn(4, 64) * 3 + 2
    for name in ["layernorm", "adanorm", "rmsnorm", "detachnorm"]:
        m = build_norm(name, 64)
        want = m(x)
        got = m.to(dtype)(x.to(dtype))
        assert got.dtype == dtype
        torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)
