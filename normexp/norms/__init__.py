"""Normalization variants: the independent variable of every normexp experiment.

Every variant normalizes the last dimension of a (..., H) input; x is one row, mu its mean.

=================  =========================================================  ====================
name               forward                                                    options
=================  =========================================================  ====================
none               z = x  (the papers' "w/o Norm"; no parameters)              eps (ignored)
layernorm          z = g * (x - mu) / s + b      (Ba et al.)                  eps unbiased eps_mode bias
layernorm_simple   z = (x - mu) / s              (Xu et al.; no gain/bias)    eps unbiased eps_mode
detachnorm         z = (x - sg(mu)) / sg(s)      (sg = stop-gradient)         eps unbiased eps_mode
detach_mean        z = (x - sg(mu)) / s                                       eps unbiased eps_mode
detach_var         z = (x - mu) / sg(s)                                       eps unbiased eps_mode
adanorm            z = C * (1 - k * sg(y)) * y,  y = (x - mu) / s             eps unbiased eps_mode C k
rmsnorm            z = g * x / s_rms (+ b)       (Zhang & Sennrich)           eps eps_mode bias
prmsnorm           rmsnorm with s_rms from the first m = ceil(p * H) elements eps eps_mode bias p
batchnorm          per feature over all leading dims (nn.BatchNorm1d)         eps unbiased
dyt                z = g * tanh(a * x) + b, scalar a from a0  (Zhu et al.)    alpha0 eps (ignored)
scalenorm          z = g * x / max(||x||_2, eps), one scalar g = sqrt(H) at init eps
=================  =========================================================  ====================

s = sqrt(var + eps) for eps_mode="inside" or sqrt(var) + eps for "outside"; var divides by H
(biased) or H - 1 (unbiased=True); s_rms uses mean(x[:m]^2) in place of var.  Defaults: C = 1,
k = 0.1, p = 0.0625; layernorm has gain and bias, rmsnorm/prmsnorm a gain and (paper) a bias.
All row-wise variants also take `convention`; `build_norm` rejects every other option.
DyT ("Transformers without Normalization", Zhu, Chen, He, LeCun & Liu 2025, arXiv 2503.10622): alpha0 = 0.5, the
paper's default; g = 1, b = 0 per channel.  ScaleNorm ("Transformers without Tears", Nguyen & Salazar 2019, arXiv
1910.05895): eps = 1e-5 as in the authors' code.  Neither takes a row mean or variance (recent.py: plain torch ops).

Custom norms (plugin.py, docs/custom_norm.md): NormConfig(name=..., target="pkg.module.Class", options={...}); the
target is called as target(dim, **options) and must return an nn.Module keeping its input's shape.  norm_factory
imports and probes it at once; its modules are norm sites for swap_norms like the variants above.

Conventions (docs/papers.md §1): the papers and their official code disagree on the statistics.
  convention="paper" (default), the written formulas: biased variance, eps = 1e-5 inside the sqrt
      (the papers write no eps; 1e-5 inside is torch's and the Theano LayerNorm lineage's),
      pRMSNorm m = ceil(p * H), rmsnorm/prmsnorm with bias (Eq. 4 keeps the neuron bias b).
  convention="official", the authors' PyTorch code, reproduced exactly:
      layernorm_simple, detach*, adanorm: lancopku/AdaNorm `LayerNormImpl` (--lnv nowb/adanorm):
          torch.std (unbiased), eps = 1e-5 added to the std.  Its C defaults to 2.0 (argparse),
          but C is a hyper-parameter, so the convention leaves C = 1 and the preset sets 2.
      layernorm: fairseq's torch LayerNorm, i.e. identical to "paper".
      rmsnorm, prmsnorm: bzhangGo/rmsnorm `rmsnorm_torch.py`: eps = 1e-8 added to the RMS,
          m = int(p * H) (floor), no bias.
  Explicit options override the convention's defaults.
Presets in conf/norm/ (Hydra `norm=<file>`): one file per variant name with the paper defaults, and
adanorm_official (C = 2), layernorm_simple_official, detachnorm_official, detach_mean_official,
detach_var_official, rmsnorm_official, prmsnorm_official; custom (norm.target=..., norm.options={...}).

CNNs.  A module normalizes only its input's last dimension; the model decides what goes there.
Ba et al. define a layer's normalization over all its hidden units, which for a convolution is
C x H x W: the CNN's `norm_over: layer` (default) flattens (C, H, W) into the last dimension, and
`norm_over: channel` moves C last and normalizes the C values at each spatial position.  The AdaNorm
paper's 3-layer MNIST CNN is not released and the paper does not say which it used; "layer"
follows the LayerNorm definition the paper builds on.

API
  build_norm(name, dim, **options) -> nn.Module
  swap_norms(model, name, **options) -> int      replaces every norm module in place (see swap.py)
  swap_norms_with(model, make) -> int            the same, each new module built by make(width), e.g. a factory
  norm_factory(NormConfig(...)) -> dim -> nn.Module   what models receive; validates eagerly
  resolved_options(NormConfig(...)) -> dict          every statistic choice explicit (what a run record stores)
  VARIANTS: the names above.  Invalid names or options raise ValueError listing what is valid.

Speed.  On CPU (float32/float64) a fused C++ kernel with a hand-derived backward (fast.py) is built
on first use (about 20 s, cached under $TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions) so that
no variant costs more than a fused LayerNorm; elsewhere, or if it cannot be built, layernorm and
layernorm_simple with torch's statistic run F.layer_norm (and rmsnorm F.rms_norm on CUDA; builtin.py),
the rest the torch-ops formulas in reference.py, with identical results.  Higher-order gradients
need the reference path (the fused backward is once-differentiable).  On CUDA the variants without a
torch kernel run one Triton kernel pair (triton_kernels.py).  `build_norm(..., impl=)` / `norm.impl`
chooses explicitly: auto | fused_cpu | triton | torch (dispatch.py; docs/norms.md).
"""
from .config import NormConfig, NormFactory, norm_factory, resolved_options
from .spec import VARIANTS, NormSpec, resolve
from .swap import swap_norms, swap_norms_with
from .variants import BatchNorm, NoNorm, RowNorm, build_norm

__all__ = ["VARIANTS", "NormConfig", "NormFactory", "NormSpec", "build_norm", "norm_factory", "resolve", "resolved_options", "swap_norms",
           "swap_norms_with", "BatchNorm", "NoNorm", "RowNorm"]
