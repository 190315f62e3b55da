"""fairseq's Transformer (``TransformerModel``) from one of its registered architectures, with our norm at every site.

``arch`` names a fairseq architecture (``transformer_iwslt_de_en``, ``transformer_wmt_en_de``,
``transformer_wmt_en_de_big_t2t``, ...); each non-null field below overrides the architecture's default, exactly like
the same ``--flag`` on ``fairseq-train`` (the architecture function only fills what is unset). fairseq builds its
``LayerNorm`` modules inline, so after ``build_model`` every one of them is replaced (``swap_fairseq_norms``, through
``normexp.norms.swap_norms_with``) by a module from the run's norm factory, and the count is checked against the
number of norm sites the configuration implies.

``init``: ``fairseq`` keeps fairseq 0.12's own init (Xavier-uniform attention projections, PyTorch-default FFN);
``km`` is the AdaNorm scripts' ``--init_method km`` (lancopku/AdaNorm ``transformer_layer.py``,
``multihead_attention.py``):
Kaiming-uniform with a=√5 (PyTorch's ``nn.Linear`` default) for the q/k/v/out projections and fc1/fc2, biases zero.

``norm_sites``: ``all`` (default) puts the run's norm at every site, as the AdaNorm paper describes; ``final`` only at
the encoder's and decoder's final norms, as lancopku/AdaNorm's released fork does (its ``--lnv`` reaches only
``fairseq/models/transformer.py``'s ``LayerNorm(embed_dim, args=args)``; the per-layer norms of
``fairseq/modules/transformer_layer.py`` are built without ``args`` and stay fairseq's LayerNorm; docs/papers.md §1.5).
fairseq builds those final norms only in pre-norm mode.
"""
from __future__ import annotations

import argparse
import math
import types
from dataclasses import dataclass, fields
from typing import Optional

from torch import nn

from normexp.norms import swap_norms_with
from normexp.norms import NormFactory

INITS = ("fairseq", "km")
NORM_SITES = ("all", "final")
FINAL_NORMS = ("encoder", "decoder")  # the stacks whose ``layer_norm`` the released code swaps


@dataclass
class FairseqTransformerConfig:
    name: str = "fairseq_transformer"
    arch: str = "transformer_iwslt_de_en"
    init: str = "fairseq"  # fairseq | km
    norm_sites: str = "all"  # all | final (only the encoder's and decoder's final norms: the released AdaNorm code)
    # overrides of the architecture's defaults (null: keep the architecture's value)
    encoder_normalize_before: Optional[bool] = None
    decoder_normalize_before: Optional[bool] = None
    share_all_embeddings: Optional[bool] = None
    share_decoder_input_output_embed: Optional[bool] = None
    dropout: Optional[float] = None
    attention_dropout: Optional[float] = None
    activation_dropout: Optional[float] = None
    encoder_embed_dim: Optional[int] = None
    encoder_ffn_embed_dim: Optional[int] = None
    encoder_layers: Optional[int] = None
    encoder_attention_heads: Optional[int] = None
    decoder_embed_dim: Optional[int] = None
    decoder_ffn_embed_dim: Optional[int] = None
    decoder_layers: Optional[int] = None
    decoder_attention_heads: Optional[int] = None
    max_source_positions: Optional[int] = None
    max_target_positions: Optional[int] = None


def fairseq_args(cfg: FairseqTransformerConfig) -> argparse.Namespace:
    """The argparse namespace ``fairseq-train --arch <arch> --<overrides>`` would hand to ``build_model``."""
    from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
    from fairseq.models.transformer import TransformerModel

    if ARCH_MODEL_REGISTRY.get(cfg.arch) is not TransformerModel:
        known = sorted(a for a, m in ARCH_MODEL_REGISTRY.items() if m is TransformerModel)
        raise ValueError(f"model.arch={cfg.arch!r} is not a fairseq TransformerModel architecture: "
                         f"choose one of {known}")
    if cfg.init not in INITS:
        raise ValueError(f"model.init={cfg.init!r} is not valid: choose one of {INITS}")
    if cfg.norm_sites not in NORM_SITES:
        raise ValueError(f"model.norm_sites={cfg.norm_sites!r} is not valid: choose one of {NORM_SITES}")
    skip = {"name", "arch", "init", "norm_sites"}
    args = argparse.Namespace(**{f.name: getattr(cfg, f.name) for f in fields(cfg)
                                 if f.name not in skip and getattr(cfg, f.name) is not None})
    ARCH_CONFIG_REGISTRY[cfg.arch](args)
    args.arch = cfg.arch
    args.max_source_positions = getattr(args, "max_source_positions", None) or 1024  # fairseq's defaults
    args.max_target_positions = getattr(args, "max_target_positions", None) or 1024
    return args


def expected_norm_sites(args: argparse.Namespace) -> int:
    """Norm modules fairseq builds for ``args``: 2 per encoder layer, 3 per decoder layer (2 without cross-attention),
    a final norm per stack in pre-norm mode, and the optional embedding norms."""
    decoder_per_layer = 2 if getattr(args, "no_cross_attention", False) else 3
    n = 2 * args.encoder_layers + decoder_per_layer * args.decoder_layers
    n += int(bool(args.encoder_normalize_before))
    n += int(bool(args.decoder_normalize_before) and not getattr(args, "no_decoder_final_norm", False))
    return n + 2 * int(bool(getattr(args, "layernorm_embedding", False)))


def km_init(model: nn.Module) -> None:
    """AdaNorm's ``--init_method km`` for every projection inside the encoder and decoder layers."""
    for layer in list(model.encoder.layers) + list(model.decoder.layers):
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


def build_fairseq_transformer(cfg: FairseqTransformerConfig, src_dict, tgt_dict, norm: NormFactory) -> nn.Module:
    """fairseq's TransformerModel for ``cfg`` over the two dictionaries, every norm site rebuilt by ``norm``."""
    from fairseq.models.transformer import TransformerModel

    args = fairseq_args(cfg)
    model = TransformerModel.build_model(args, types.SimpleNamespace(source_dictionary=src_dict,
                                                                     target_dictionary=tgt_dict))
    if cfg.init == "km":
        km_init(model)
    if cfg.norm_sites == "final":
        swap_final_norms(model, args, norm)
    else:
        swap_fairseq_norms(model, args, norm)
    return model


def swap_final_norms(model: nn.Module, args: argparse.Namespace, norm: NormFactory) -> int:
    """Replaces only the encoder's and decoder's final ``layer_norm`` with ``norm(width)`` (``norm_sites: final``);
    every per-layer norm stays fairseq's LayerNorm. Returns how many were replaced (2 in pre-norm mode)."""
    replaced = 0
    for stack in (getattr(model, name) for name in FINAL_NORMS):
        if getattr(stack, "layer_norm", None) is None:
            continue
        holder = nn.Module()  # swap_norms_with replaces children of a parent: give the one norm a parent of its own
        holder.layer_norm = stack.layer_norm
        replaced += swap_norms_with(holder, norm)
        stack.layer_norm = holder.layer_norm
    if replaced == 0:
        raise ValueError(f"model.norm_sites=final swaps the encoder's and decoder's final norms, which fairseq builds "
                         f"only in pre-norm mode: set model.encoder_normalize_before=true and "
                         f"model.decoder_normalize_before=true, or use model.norm_sites=all")
    return replaced


def swap_fairseq_norms(model: nn.Module, args: argparse.Namespace, norm: NormFactory) -> int:
    """Replaces every norm module of a fairseq model built for ``args`` with ``norm(width)``; returns how many.

    The swap goes through the run's norm factory, so that the trainer sees every site it built (norm-site count,
    gradient statistics). The count must be the one ``args`` implies: a fairseq version that builds its norms
    differently (another class, an extra site) would otherwise train part of the model with the wrong norm.
    """
    replaced, expected = swap_norms_with(model, norm), expected_norm_sites(args)
    if replaced != expected:
        raise RuntimeError(f"replaced {replaced} norm modules in fairseq's {args.arch}, but its configuration implies "
                           f"{expected} (expected_norm_sites): fairseq builds its norms differently than assumed")
    return replaced
