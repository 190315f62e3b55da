"""MNIST digit classification (the AdaNorm paper's MNIST column): original idx files, accuracy in percent.

Split: the 60,000 training images minus the last ``valid_size`` (5,000 by default) for training, those last images
for validation (the usual convention, docs/data.md), the 10,000 t10k images for test.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normexp.norms import NormFactory
from normexp.tasks.base import Task, classification_metrics
from normexp.tasks.batching import ShuffledBatches, sequential_batches
from normexp.tasks.files import DataError, FileSpec, fetch

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")


def _spec(name: str, content_sha256: str, sha256: str | None = None) -> FileSpec:
    return FileSpec(f"mnist/{name}", sha256=sha256, content_sha256=content_sha256, urls=tuple(m + name for m in MIRRORS))


# Checked on the decompressed content: one public copy of train-images is re-compressed (different .gz bytes).
FILES = {
    "train_images": _spec("train-images-idx3-ubyte.gz", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train_labels": _spec(
        "train-labels-idx1-ubyte.gz",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "test_images": _spec(
        "t10k-images-idx3-ubyte.gz",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "test_labels": _spec(
        "t10k-labels-idx1-ubyte.gz",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}
MEAN, STD = 0.1307, 0.3081  # of the 60k training pixels (verified in docs/data.md)


def read_idx(path: Path) -> np.ndarray:
    """Reads an idx file (gzipped): magic 0x801 (labels) or 0x803 (images), big-endian sizes, then uint8 data."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic not in (0x801, 0x803):
        raise DataError(f"{path} is not an MNIST idx file (magic {magic:#x}, expected 0x801 or 0x803)")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path} holds {data.size} values but its header says {shape}: the file is truncated")
    return data.reshape(shape)


def load_mnist() -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(read_idx(fetch(spec)).copy()) for key, spec in FILES.items()}


@dataclass
class MnistConfig:
    name: str = "mnist"
    valid_size: int = 5000
    train_size: int = 0  # 0: all remaining training images; else the first N (smoke profiles)
    test_size: int = 0  # 0: all 10,000 test images; else the first N (smoke profiles and tests only)
    batch_size: int = 128
    eval_batch_size: int = 1000
    permute_pixels: bool = False  # permutation-invariant MNIST (Ba et al.): a fixed pixel shuffle
    permutation_seed: int = 0


class MnistTask(Task):
    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: MnistConfig, model_cfg, seed: int):
        self.cfg, self.model_cfg, self.seed = cfg, model_cfg, seed
        raw = load_mnist()
        images = torch.cat([raw["train_images"], raw["test_images"]]).float().div_(255).sub_(MEAN).div_(STD)
        if cfg.permute_pixels:
            perm = torch.randperm(28 * 28, generator=torch.Generator().manual_seed(cfg.permutation_seed))
            images = images.flatten(1)[:, perm].view(-1, 28, 28)
        images = images.unsqueeze(1)
        n_train_all = len(raw["train_labels"])
        if not 0 < cfg.valid_size < n_train_all:
            raise ValueError(f"task.valid_size={cfg.valid_size} must be between 1 and {n_train_all - 1}")
        cut = n_train_all - cfg.valid_size
        n_train = cut if cfg.train_size <= 0 else min(cfg.train_size, cut)
        labels = raw["train_labels"].long()
        self.splits = {
            "train": (images[:n_train], labels[:n_train]),
            "valid": (images[cut:n_train_all], labels[cut:]),
            "test": (images[n_train_all:], raw["test_labels"].long()),
        }
        if cfg.test_size > 0:
            self.splits["test"] = tuple(t[: cfg.test_size] for t in self.splits["test"])

    def build_model(self, norm: NormFactory) -> nn.Module:
        if self.model_cfg.name == "mlp":  # permutation-invariant MNIST (Ba et al.): pixels as a flat vector
            from normexp.models.mlp import MLP

            return MLP(self.model_cfg, norm, in_features=28 * 28, out_features=10)
        from normexp.models.cnn import MnistCNN

        if self.model_cfg.name != "cnn":
            raise ValueError(f"task=mnist supports model=cnn or model=mlp, not model={self.model_cfg.name}")
        return MnistCNN(self.model_cfg, norm)

    def train_batches(self, epoch: int) -> ShuffledBatches:
        return ShuffledBatches(self.splits["train"], self.cfg.batch_size, self.seed, epoch)

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        images, labels = batch
        return F.cross_entropy(model(images), labels), len(labels)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        return classification_metrics(model, sequential_batches(self.splits[split], self.cfg.eval_batch_size))

    def describe(self) -> dict:
        return {
            "files": {key: spec.relpath for key, spec in FILES.items()},
            "sizes": {split: len(tensors[1]) for split, tensors in self.splits.items()},
            "split": f"train = first {len(self.splits['train'][1])} of the 60k training images, valid = last "
            f"{self.cfg.valid_size}, test = t10k",
            "permute_pixels": self.cfg.permute_pixels,
        }
