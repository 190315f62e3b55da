"""A Transformer encoder (Vaswani et al. 2017) pooled into a classifier: the model of the AdaNorm paper's RT and SST5
columns ("a Transformer with a 4-layer encoder", docs/papers.md §2.1; the rest is our choice, see the config comments).

Each layer: self-attention and a ReLU feed-forward block, each inside a residual connection with a norm —
post-norm (the original Transformer: ``x = norm(x + f(x))``) by default, or pre-norm (``x = x + f(norm(x))``, plus a
final norm after the last layer, as fairseq's ``--encoder-normalize-before``). Every norm site is built by the norm
factory; the layers are written here so that no ``nn.LayerNorm`` hides inside ``nn.TransformerEncoderLayer``.
Linear layers keep PyTorch's default init (Kaiming-uniform, a=√5), as the AdaNorm code's ``--init_method km``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from normexp.norms import NormFactory


@dataclass
class TransformerEncoderConfig:
    name: str = "transformer_encoder"
    layers: int = 4  # the paper's encoder depth for RT/SST5 (poster "Model Layers" row)
    d_model: int = 64
    heads: int = 4
    d_ff: int = 128
    dropout: float = 0.3  # on embeddings, sublayer outputs and the pooled vector
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0  # inside the feed-forward block, after the ReLU
    pre_norm: bool = False  # False: post-norm (original Transformer); True: pre-norm with a final norm
    max_positions: int = 128
    positions: str = "sinusoidal"  # sinusoidal | learned
    scale_embeddings: bool = True  # token embeddings × sqrt(d_model), as Vaswani et al. and fairseq
    pooling: str = "mean"  # mean (over non-padding tokens) | max | cls (a learned first token)


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"model.d_model={d_model} must be divisible by model.heads={heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """``x``: (B, L, D); ``keep``: (B, L) bool, False at padding (never attended to)."""
        b, length, d = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, length, d))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerEncoderConfig, norm: NormFactory):
        super().__init__()
        self.pre_norm = cfg.pre_norm
        self.attn = SelfAttention(cfg.d_model, cfg.heads, cfg.attention_dropout)
        self.attn_norm = norm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.ReLU(), nn.Dropout(cfg.activation_dropout),
                                nn.Linear(cfg.d_ff, cfg.d_model))
        self.ff_norm = norm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.dropout(self.attn(self.attn_norm(x), keep))
            return x + self.dropout(self.ff(self.ff_norm(x)))
        x = self.attn_norm(x + self.dropout(self.attn(x, keep)))
        return self.ff_norm(x + self.dropout(self.ff(x)))


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq)[:, : d_model // 2]
    return table


class TransformerClassifier(nn.Module):
    """Token ids (B, L), padded with ``pad`` → class logits (B, num_classes)."""

    def __init__(self, cfg: TransformerEncoderConfig, norm: NormFactory, vocab_size: int, num_classes: int,
                 pad: int = 0):
        super().__init__()
        if cfg.pooling not in ("mean", "max", "cls"):
            raise ValueError(f"model.pooling={cfg.pooling!r} is not valid: choose mean, max or cls")
        if cfg.positions not in ("sinusoidal", "learned"):
            raise ValueError(f"model.positions={cfg.positions!r} is not valid: choose sinusoidal or learned")
        self.cfg, self.pad = cfg, pad
        self.embed = nn.Embedding(vocab_size, cfg.d_model, padding_idx=pad)
        nn.init.normal_(self.embed.weight, 0.0, cfg.d_model ** -0.5)  # fairseq's Embedding init
        nn.init.zeros_(self.embed.weight[pad])
        self.embed_scale = math.sqrt(cfg.d_model) if cfg.scale_embeddings else 1.0
        if cfg.positions == "learned":
            self.positions = nn.Parameter(torch.randn(cfg.max_positions, cfg.d_model) * cfg.d_model ** -0.5)
        else:
            self.register_buffer("positions", sinusoidal_positions(cfg.max_positions, cfg.d_model), persistent=False)
        self.cls = nn.Parameter(torch.randn(cfg.d_model) * cfg.d_model ** -0.5) if cfg.pooling == "cls" else None
        self.layers = nn.ModuleList(EncoderLayer(cfg, norm) for _ in range(cfg.layers))
        self.final_norm = norm(cfg.d_model) if cfg.pre_norm else None  # pre-norm leaves the stream unnormalized
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.d_model, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        keep = tokens != self.pad
        x = self.embed(tokens) * self.embed_scale
        if self.cls is not None:
            x = torch.cat([self.cls.expand(len(x), 1, -1), x], dim=1)
            keep = torch.cat([keep.new_ones(len(x), 1), keep], dim=1)
        if x.shape[1] > self.cfg.max_positions:
            raise ValueError(f"a batch of length {x.shape[1]} exceeds model.max_positions={self.cfg.max_positions}: "
                             "raise it or lower task.max_len")
        x = self.dropout(x + self.positions[: x.shape[1]])
        for layer in self.layers:
            x = layer(x, keep)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return self.classifier(self.dropout(self.pool(x, keep)))

    def pool(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        if self.cfg.pooling == "cls":
            return x[:, 0]
        mask = keep.unsqueeze(-1)
        if self.cfg.pooling == "max":
            return x.masked_fill(~mask, float("-inf")).max(1).values
        return (x * mask).sum(1) / mask.sum(1).clamp(min=1)
