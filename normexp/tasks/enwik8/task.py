"""enwik8 character-level language modelling with Transformer-XL (the AdaNorm paper's Enwiki8 column), in bpc.

Data: enwik8 split 90M/5M/5M bytes as Transformer-XL prepares it (``enwik8_data.py``), or any text file given as
``data_file`` (split by the same 90/5/5 proportions; the record names the file and its sha256).
Batching is Transformer-XL's ``LMOrderedIterator``: each split is cut into ``batch_size`` contiguous streams, read
``tgt_len`` tokens at a time in order. Training carries the memory from one batch to the next inside ``loss()`` and
starts each epoch with none. A run resumed mid-epoch restarts with an empty memory too (memory is not checkpointed).
Validation during training uses the training settings (``tgt_len``, the model's memory and clamp) on the first
``valid_tokens`` tokens of valid: cheap enough to run often, and the same slice every time. The final evaluation (the
trainer's "test", once, on the best weights) is upstream's ``eval.py`` setting — ``eval_tgt_len`` / ``eval_mem_len``
/ ``eval_clamp_len`` / ``eval_same_length`` over ``eval_batch_size`` streams — on all of test (``bpc``) and all of
valid (``valid_bpc``); bpc = mean cross-entropy / ln 2.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from normexp.tasks.enwik8 import data
from normexp.norms import NormFactory
from normexp.tasks.base import Task, model_device
from normexp.tasks.files import DataError

LN2 = math.log(2)


@dataclass
class Enwik8Config:
    name: str = "enwik8"
    data_file: str = ""  # "": enwik8 itself; else any file (absolute, or relative to a data root), split 90/5/5
    drop_newlines: bool = True  # Transformer-XL's preparation drops newline bytes (see enwik8_data.py)
    batch_size: int = 22
    tgt_len: int = 512  # tokens predicted per training segment
    eval_batch_size: int = 10
    eval_tgt_len: int = 80
    eval_mem_len: int = 2100
    eval_clamp_len: int = 820  # <= 0: no clamping
    eval_same_length: bool = True
    valid_tokens: int = 1_000_000  # validation during training: this many leading valid tokens (0: all of valid)


class SegmentBatches:
    """(input, target) pairs of [batch_size, <= tgt_len] token ids: ``batch_size`` contiguous streams read in order,
    so that batch k+1 continues batch k and the memory of one segment is the context of the next."""

    def __init__(self, tokens: torch.Tensor, batch_size: int, tgt_len: int):
        steps = len(tokens) // batch_size
        if steps < 2:
            raise DataError(f"{len(tokens)} tokens are too few for {batch_size} streams of at least 2 tokens; "
                            "use a larger data file or a smaller batch size")
        self.streams = tokens[: steps * batch_size].view(batch_size, steps)
        self.tgt_len = tgt_len

    def __len__(self) -> int:
        return -(-(self.streams.size(1) - 1) // self.tgt_len)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        last = self.streams.size(1) - 1  # the last token is only a target
        for i in range(0, last, self.tgt_len):
            n = min(self.tgt_len, last - i)
            yield self.streams[:, i : i + n], self.streams[:, i + 1 : i + 1 + n]


class Enwik8Task(Task):
    primary_metric = "bpc"
    higher_is_better = False

    def __init__(self, cfg: Enwik8Config, model_cfg, seed: int):
        self.cfg, self.model_cfg, self.seed = cfg, model_cfg, seed
        for key in ("batch_size", "tgt_len", "eval_batch_size", "eval_tgt_len"):
            if getattr(cfg, key) <= 0:
                raise ValueError(f"task.{key}={getattr(cfg, key)} must be > 0")
        if cfg.eval_same_length and cfg.eval_mem_len <= 0:
            raise ValueError("task.eval_same_length=true needs task.eval_mem_len > 0")
        if cfg.data_file:
            raw, path = data.read_text_file(cfg.data_file)
            self.source = {"data": "data_file (not enwik8)", "file": str(path)}
            eval_bytes = int(len(raw) * data.EVAL_FRACTION)
        else:
            raw, where = data.read_enwik8()
            self.source = {"data": "enwik8", "file": where}
            eval_bytes = data.EVAL_BYTES
        self.source["sha256"] = hashlib.sha256(raw).hexdigest()
        parts = data.split_bytes(raw, eval_bytes)
        self.split_bytes = {split: len(part) for split, part in parts.items()}
        self.vocab = data.byte_vocab(parts, cfg.drop_newlines)
        self.tokens = {split: data.encode(part, self.vocab, cfg.drop_newlines) for split, part in parts.items()}
        self.mems = None

    def build_model(self, norm: NormFactory) -> nn.Module:
        from normexp.models.transformer_xl import TransformerXL

        if self.model_cfg.name != "transformer_xl":
            raise ValueError(f"task=enwik8 supports model=transformer_xl, not model={self.model_cfg.name}")
        return TransformerXL(self.model_cfg, len(self.vocab), norm)

    def train_batches(self, epoch: int) -> SegmentBatches:
        return SegmentBatches(self.tokens["train"], self.cfg.batch_size, self.cfg.tgt_len)

    def start_epoch(self, epoch: int) -> None:
        self.mems = None  # each epoch reads the streams from their start: earlier memory is not their context

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        inputs, targets = batch
        logits, self.mems = model(inputs.long(), self.mems)
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.long().flatten()), targets.numel()

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        cfg = self.cfg
        if split == "valid":  # during training: the training settings on a fixed slice
            tokens = self.tokens["valid"][: cfg.valid_tokens] if cfg.valid_tokens > 0 else self.tokens["valid"]
            return self._bpc(model, tokens, cfg.eval_batch_size, cfg.tgt_len)
        with model.lengths(cfg.eval_mem_len, cfg.eval_clamp_len, cfg.eval_same_length):
            valid = self._bpc(model, self.tokens["valid"], cfg.eval_batch_size, cfg.eval_tgt_len)
            test = self._bpc(model, self.tokens[split], cfg.eval_batch_size, cfg.eval_tgt_len)
        return {**test, "valid_loss": valid["loss"], "valid_bpc": valid["bpc"]}

    @staticmethod
    def _bpc(model: nn.Module, tokens: torch.Tensor, batch_size: int, tgt_len: int) -> dict[str, float]:
        device = model_device(model)
        total, count, mems = torch.zeros((), dtype=torch.float64, device=device), 0, None  # read once, at the end
        for inputs, targets in SegmentBatches(tokens, batch_size, tgt_len):
            logits, mems = model(inputs.to(device).long(), mems)
            targets = targets.to(device).long().flatten()
            total += F.cross_entropy(logits.flatten(0, 1).float(), targets, reduction="sum")
            count += targets.numel()
        loss = float(total) / count
        return {"loss": loss, "bpc": loss / LN2}

    def describe(self) -> dict:
        return {
            **self.source,
            "bytes": self.split_bytes,
            "tokens": {split: len(t) for split, t in self.tokens.items()},
            "vocab_size": len(self.vocab),
            "drop_newlines": self.cfg.drop_newlines,
            "split": "Transformer-XL prep_enwik8.py: train = all but the last 2 held-out parts, valid = the first, "
            f"test = the last ({self.split_bytes['test']} bytes each)",
        }
