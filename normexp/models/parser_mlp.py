"""The MLP of a Chen & Manning (2014) transition parser, for the AdaNorm paper's PTB column.

Input: a row of feature ids, word features first, then tag features, then label features. Each group has its own
embedding table; the embeddings are concatenated and go through ``layers`` hidden layers
Linear → norm → activation → dropout, then a Linear to the transition scores.

"3 layers" (the poster's "Model Layers" row for PTB, docs/papers.md §2.1) is read as three hidden layers, each with a norm:
the same reading as the MNIST column's "3-layer CNN" in this suite (three hidden layers, a norm after each).
Chen & Manning's own parser has one hidden layer of 200 cube units; ``layers: 1`` with ``activation: cube`` is that.
The norm sits on the summed inputs before the nonlinearity, as in Ba et al.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from normexp.norms import NormFactory

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "cube": lambda x: x * x * x}


@dataclass
class ParserMLPConfig:
    name: str = "parser_mlp"
    word_dim: int = 50
    tag_dim: int = 50
    label_dim: int = 50
    hidden: int = 200
    layers: int = 3  # hidden layers, each Linear → norm → activation → dropout
    activation: str = "relu"  # relu | tanh | cube (Chen & Manning's)
    dropout: float = 0.5
    embed_init: float = 0.01  # embeddings start uniform in ±embed_init (Chen & Manning: 0.01)


class ParserMLP(nn.Module):
    """``forward(features)``: (B, F) long ids → (B, n_classes) transition scores.

    ``vocab`` gives the table sizes (words, tags, labels) and ``features`` how many ids of each group a row holds
    (in that order); a group with 0 features (labels of an unlabeled treebank) gets no table.
    """

    def __init__(self, cfg: ParserMLPConfig, norm: NormFactory, vocab: tuple[int, int, int],
                 features: tuple[int, int, int], n_classes: int):
        super().__init__()
        if cfg.activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={cfg.activation!r} is not valid: choose one of {sorted(ACTIVATIONS)}")
        if cfg.layers < 1:
            raise ValueError(f"model.layers={cfg.layers} must be at least 1")
        dims = (cfg.word_dim, cfg.tag_dim, cfg.label_dim)
        self.features = list(features)
        self.embeddings = nn.ModuleList(nn.Embedding(v, d) for v, d, f in zip(vocab, dims, features) if f)
        for table in self.embeddings:
            nn.init.uniform_(table.weight, -cfg.embed_init, cfg.embed_init)
        width = sum(d * f for d, f in zip(dims, features))
        self.linears, self.norms = nn.ModuleList(), nn.ModuleList()
        for _ in range(cfg.layers):
            self.linears.append(nn.Linear(width, cfg.hidden))
            self.norms.append(norm(cfg.hidden))
            width = cfg.hidden
        self.activation = ACTIVATIONS[cfg.activation]
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(width, n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        groups = [g for g, f in zip(features.split(self.features, dim=1), self.features) if f]
        x = torch.cat([table(g).flatten(1) for table, g in zip(self.embeddings, groups)], dim=1)
        for linear, norm in zip(self.linears, self.norms):
            x = self.dropout(self.activation(norm(linear(x))))
        return self.out(x)
