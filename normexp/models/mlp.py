"""The feed-forward classifier of Ba et al.'s permutation-invariant MNIST experiment: 784-1000-1000-10 by default.

linear → norm → ReLU (→ dropout) per hidden layer, then a plain linear output layer. The norm sits on each hidden
layer's summed inputs before the nonlinearity, and not on the logits: Ba et al. apply layer normalization "only to
the fully-connected hidden layers", since the logits' scale is the prediction's confidence ([recalled] from arXiv
1607.06450's perm-MNIST section; docs/papers.md §2.3 (recalled)). ReLU, dropout 0 and torch's default init are our
choices (as far as we recall, the paper's text gives none of them).

Re-centring experiment (Zhang & Sennrich; bzhangGo/rmsnorm README): "we initialize the weights with a center of about
0.2" (RNNSearch in Nematus; the README gives no spread). Here every weight matrix is initialised as its usual draw
plus ``weight_init_mean`` — torch's default uniform(±1/√fan_in), or N(0, ``weight_init_std``²) when that is > 0.
Shifting a matrix by a constant c adds c·Σx to every unit of the layer, the same for all units of one example:
LayerNorm removes it exactly (weight-matrix re-centring invariance), RMSNorm and BatchNorm do not, and the
softmax ignores it in the output layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from normexp.norms import NormFactory


@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [1000, 1000])  # Ba et al.: 784-1000-1000-10
    dropout: float = 0.0
    weight_init_mean: float = 0.0  # added to every weight matrix at init (re-centring experiment: 0.2)
    weight_init_std: float = 0.0  # 0: torch's default uniform init; > 0: N(0, std²) before the shift


class MLP(nn.Module):
    """Flattens its input (e.g. (N, 1, 28, 28) images) and classifies it; one norm site per hidden layer."""

    def __init__(self, cfg: MLPConfig, norm: NormFactory, in_features: int, out_features: int):
        super().__init__()
        if not cfg.hidden or any(h < 1 for h in cfg.hidden):
            raise ValueError(f"model.hidden={list(cfg.hidden)} must list one or more positive layer widths")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"model.dropout={cfg.dropout} must be in [0, 1)")
        if cfg.weight_init_std < 0:
            raise ValueError(f"model.weight_init_std={cfg.weight_init_std} must be >= 0 (0: torch's default init)")
        widths = [in_features, *cfg.hidden]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.norms = nn.ModuleList(norm(h) for h in cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(widths[-1], out_features)
        with torch.no_grad():
            for linear in [*self.linears, self.out]:
                if cfg.weight_init_std > 0:
                    linear.weight.normal_(0.0, cfg.weight_init_std)
                linear.weight.add_(cfg.weight_init_mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for linear, norm in zip(self.linears, self.norms):
            x = self.dropout(torch.relu(norm(linear(x))))
        return self.out(x)
