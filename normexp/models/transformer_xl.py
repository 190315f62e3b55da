"""Transformer-XL (Dai et al. 2019): a decoder-only LM with relative positions and segment-level recurrence.

Follows kimiyoung/transformer-xl ``pytorch/mem_transformer.py`` (``attn_type=0``, the paper's model):
- relative attention score (q + u)·k + (q + v)·W_r r_{i-j}, sinusoid r, u and v (``r_w_bias``, ``r_r_bias``) learned and
  shared by all layers; the (q + v)·r term is aligned by the "relative shift" (``rel_shift``);
- a memory of ``mem_len`` cached, gradient-free hidden states per layer input, carried from segment to segment;
- ``clamp_len``: distances beyond it use the embedding of ``clamp_len``; ``same_length``: every query sees exactly
  ``mem_len`` keys (their evaluation setting);
- post-norm by default (``pre_lnorm=False``; the base enwik8 script does not pass ``--pre_lnorm``). Two norm sites per
  layer, both built by the norm factory: after the attention residual and after the feed-forward residual. As upstream,
  pre-norm mode has no final norm before the softmax;
- embedding scaled by sqrt(d_model), output softmax tied to it (``tie_weight``) with its own bias;
- init as upstream ``train.py`` (``--init normal``): Linear/Embedding weights and u, v ~ N(0, init_std), biases 0. Norm
  gains (of the variants that have one) start at 1, the norm library's init, unless ``norm_gain_std`` > 0: then they are
  drawn from N(1, norm_gain_std), as upstream ``init_weight`` draws LayerNorm weights from N(1, init_std).
Tensors are batch-first here: tokens [B, T], hidden [B, T, D], scores [B, H, Q, K].
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from normexp.norms import NormFactory

Mems = list[torch.Tensor]  # one [B, M, D] tensor per layer: the inputs that layer saw in earlier segments


@dataclass
class TransformerXLConfig:
    name: str = "transformer_xl"
    n_layer: int = 12
    d_model: int = 512
    n_head: int = 8
    d_head: int = 64
    d_inner: int = 2048
    dropout: float = 0.1
    dropatt: float = 0.0
    pre_lnorm: bool = False
    mem_len: int = 512  # training memory; the evaluator sets its own (the task's eval_mem_len)
    clamp_len: int = -1  # <= 0: no clamping
    same_length: bool = False
    tie_weight: bool = True
    init_std: float = 0.02
    norm_gain_std: float = 0.0  # > 0: norm gains ~ N(1, norm_gain_std) (upstream: init_std); 0: gains start at 1


def rel_shift(x: torch.Tensor) -> torch.Tensor:
    """Aligns position scores: ``x[..., i, k]`` scores query i against distance ``K-1-k``; the result's ``[..., i, j]``
    scores it against key j, i.e. distance ``M+i-j`` with M = K-Q memory positions. Valid where j <= M+i (the causal
    part); the rest is garbage that the mask removes. Upstream's zero-pad-and-reshape trick, on the last two dims."""
    *lead, q, k = x.shape
    padded = F.pad(x, (1, 0)).view(*lead, k + 1, q)
    return padded[..., 1:, :].reshape(*lead, q, k)


def attention_mask(q: int, m: int, mem_len: int, same_length: bool, device: torch.device) -> torch.Tensor:
    """[Q, K] bool, True = masked: query i (absolute position m+i) sees keys j <= m+i, and with ``same_length``
    only the last ``mem_len`` of them."""
    i = torch.arange(q, device=device)[:, None]
    j = torch.arange(q + m, device=device)[None, :]
    mask = j > i + m
    if same_length:
        shift = mem_len - m if q + m > mem_len else q
        mask |= j <= i - shift
    return mask


class RelMultiHeadAttention(nn.Module):
    def __init__(self, cfg: TransformerXLConfig, norm: NormFactory):
        super().__init__()
        self.n_head, self.d_head, self.pre_lnorm = cfg.n_head, cfg.d_head, cfg.pre_lnorm
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.n_head * cfg.d_head, bias=False)
        self.r_net = nn.Linear(cfg.d_model, cfg.n_head * cfg.d_head, bias=False)
        self.o_net = nn.Linear(cfg.n_head * cfg.d_head, cfg.d_model, bias=False)
        self.norm = norm(cfg.d_model)
        self.drop, self.dropatt = nn.Dropout(cfg.dropout), nn.Dropout(cfg.dropatt)
        self.scale = cfg.d_head ** -0.5

    def forward(self, x, mem, pos_emb, u, v, mask) -> torch.Tensor:
        b, q_len, _ = x.shape
        cat = x if mem is None else torch.cat([mem, x], 1)
        k_len = cat.size(1)
        heads = self.qkv(self.norm(cat) if self.pre_lnorm else cat)
        q, k, val = (t.view(b, k_len, self.n_head, self.d_head) for t in heads.chunk(3, -1))
        q = q[:, -q_len:]
        r = self.r_net(pos_emb).view(k_len, self.n_head, self.d_head)
        content = torch.einsum("bqhd,bkhd->bhqk", q + u, k)
        position = rel_shift(torch.einsum("bqhd,khd->bhqk", q + v, r))
        score = ((content + position) * self.scale).float().masked_fill(mask, float("-inf"))
        prob = self.dropatt(score.softmax(-1).type_as(x))
        out = torch.einsum("bhqk,bkhd->bqhd", prob, val).reshape(b, q_len, self.n_head * self.d_head)
        out = self.drop(self.o_net(out))
        return x + out if self.pre_lnorm else self.norm(x + out)


class PositionwiseFF(nn.Module):
    def __init__(self, cfg: TransformerXLConfig, norm: NormFactory):
        super().__init__()
        self.pre_lnorm = cfg.pre_lnorm
        self.net = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_inner), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout),
                                 nn.Linear(cfg.d_inner, cfg.d_model), nn.Dropout(cfg.dropout))
        self.norm = norm(cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(self.norm(x)) if self.pre_lnorm else self.norm(x + self.net(x))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TransformerXLConfig, norm: NormFactory):
        super().__init__()
        self.attn = RelMultiHeadAttention(cfg, norm)
        self.ff = PositionwiseFF(cfg, norm)

    def forward(self, x, mem, pos_emb, u, v, mask) -> torch.Tensor:
        return self.ff(self.attn(x, mem, pos_emb, u, v, mask))


class TransformerXL(nn.Module):
    """``forward(tokens [B, Q], mems)`` → (logits [B, Q, n_token], new mems). ``mems=None`` starts without memory."""

    def __init__(self, cfg: TransformerXLConfig, n_token: int, norm: NormFactory):
        super().__init__()
        if cfg.d_model % 2:
            raise ValueError(f"model.d_model={cfg.d_model} must be even (sinusoid position embeddings)")
        for key in ("n_layer", "d_model", "n_head", "d_head", "d_inner"):
            if getattr(cfg, key) <= 0:
                raise ValueError(f"model.{key}={getattr(cfg, key)} must be > 0")
        self.cfg = cfg
        self.mem_len, self.clamp_len, self.same_length = cfg.mem_len, cfg.clamp_len, cfg.same_length
        self.emb = nn.Embedding(n_token, cfg.d_model)
        self.emb_scale = cfg.d_model ** 0.5
        self.drop = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderLayer(cfg, norm) for _ in range(cfg.n_layer))
        self.r_w_bias = nn.Parameter(torch.empty(cfg.n_head, cfg.d_head))  # u: content bias
        self.r_r_bias = nn.Parameter(torch.empty(cfg.n_head, cfg.d_head))  # v: position bias
        self.out = nn.Linear(cfg.d_model, n_token)
        if cfg.tie_weight:
            self.out.weight = self.emb.weight
        self.register_buffer("inv_freq", 1 / (10000 ** (torch.arange(0.0, cfg.d_model, 2.0) / cfg.d_model)),
                             persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.r_w_bias, 0.0, std)
        nn.init.normal_(self.r_r_bias, 0.0, std)
        if self.cfg.norm_gain_std > 0:
            for layer in self.layers:
                for norm in (layer.attn.norm, layer.ff.norm):
                    if isinstance(getattr(norm, "weight", None), nn.Parameter):  # variants without a gain have none
                        nn.init.normal_(norm.weight, 1.0, self.cfg.norm_gain_std)

    @contextmanager
    def lengths(self, mem_len: int, clamp_len: int, same_length: bool):
        """Temporarily runs with other memory settings (Transformer-XL's evaluation uses longer ones)."""
        saved = self.mem_len, self.clamp_len, self.same_length
        self.mem_len, self.clamp_len, self.same_length = mem_len, clamp_len, same_length
        try:
            yield self
        finally:
            self.mem_len, self.clamp_len, self.same_length = saved

    def position_embedding(self, k_len: int, device, dtype) -> torch.Tensor:
        pos = torch.arange(k_len - 1, -1, -1.0, device=device, dtype=dtype)  # distances, farthest key first
        if self.clamp_len > 0:
            pos = pos.clamp(max=self.clamp_len)
        angles = torch.outer(pos, self.inv_freq.to(dtype))
        return torch.cat([angles.sin(), angles.cos()], -1)

    def forward(self, tokens: torch.Tensor, mems: Mems | None = None) -> tuple[torch.Tensor, Mems | None]:
        if self.same_length and self.mem_len <= 0:
            raise ValueError("same_length needs mem_len > 0 (each query sees exactly mem_len keys)")
        q_len = tokens.size(1)
        m_len = mems[0].size(1) if mems else 0
        x = self.drop(self.emb(tokens) * self.emb_scale)
        pos_emb = self.drop(self.position_embedding(q_len + m_len, x.device, x.dtype))
        mask = attention_mask(q_len, m_len, self.mem_len, self.same_length, x.device)
        hids = []
        for i, layer in enumerate(self.layers):
            hids.append(x)
            x = layer(x, mems[i] if mems else None, pos_emb, self.r_w_bias, self.r_r_bias, mask)
        return self.out(self.drop(x)), self.update_mems(hids, mems)

    def update_mems(self, hids: Mems, mems: Mems | None) -> Mems | None:
        """The last ``mem_len`` layer inputs of memory + this segment, detached: no gradient crosses segments."""
        if self.mem_len <= 0:
            return None
        with torch.no_grad():
            cat = hids if not mems else [torch.cat([m, h], 1) for m, h in zip(mems, hids)]
            return [c[:, -self.mem_len:].detach() for c in cat]
