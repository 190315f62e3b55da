"""The MNIST CNN of the AdaNorm paper's MNIST column: 3 hidden layers, a norm after each.

The paper gives only "a 3-layer CNN" (docs/papers.md §2.1); the rest is our choice, documented here and in the README:
conv(1→c1, 3×3) → norm → ReLU → 2×2 max-pool → conv(c1→c2, 3×3) → norm → ReLU → 2×2 max-pool → linear(c2·7·7 → h) →
norm → ReLU → dropout → linear(h → 10). The norm sits on the summed inputs before the nonlinearity, as in Ba et al.

Which dimensions a conv norm covers (``norm_over``):
- ``layer`` (default): all C·H·W units of the feature map, one mean/std per example — Ba et al.'s definition of
  layer normalization ("all the hidden units in a layer"), so LayerNorm has C·H·W gains and biases;
- ``channel``: the C channels at each spatial position (the "channels-last LayerNorm" of ConvNeXt); with
  ``norm=batchnorm`` this is the usual per-channel BatchNorm2d over N·H·W.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from normexp.norms import NormFactory


@dataclass
class CNNConfig:
    name: str = "cnn"
    channels1: int = 32
    channels2: int = 64
    hidden: int = 256
    dropout: float = 0.25
    norm_over: str = "layer"  # layer | channel


class ConvNorm(nn.Module):
    """Applies a last-dim norm to an (N, C, H, W) map over ``layer`` (C·H·W) or ``channel`` (C)."""

    def __init__(self, norm: NormFactory, channels: int, size: int, over: str):
        super().__init__()
        if over not in ("layer", "channel"):
            raise ValueError(f"model.norm_over={over!r} is not valid: choose 'layer' or 'channel'")
        self.over = over
        self.norm = norm(channels * size * size if over == "layer" else channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.over == "layer":
            return self.norm(x.flatten(1)).view_as(x)
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class MnistCNN(nn.Module):
    def __init__(self, cfg: CNNConfig, norm: NormFactory, num_classes: int = 10):
        super().__init__()
        c1, c2 = cfg.channels1, cfg.channels2
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.norm1 = ConvNorm(norm, c1, 28, cfg.norm_over)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.norm2 = ConvNorm(norm, c2, 14, cfg.norm_over)
        self.fc = nn.Linear(c2 * 7 * 7, cfg.hidden)
        self.norm3 = norm(cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.hidden, num_classes)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.norm1(self.conv1(x))))
        x = self.pool(torch.relu(self.norm2(self.conv2(x))))
        x = torch.relu(self.norm3(self.fc(x.flatten(1))))
        return self.out(self.dropout(x))
