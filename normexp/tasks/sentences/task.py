"""Sentence classification (the AdaNorm paper's RT and SST5 columns): a Transformer encoder over word tokens, accuracy
(%) on test at the best valid epoch.

- ``rt``: Pang & Lee sentence polarity (2 classes). No official split: ``split=fixed`` is a seeded 8:1:1 split
  (8530/1066/1066); ``split=cv10`` holds out fold ``fold`` as test and the next fold as valid (mean over folds 0..9
  is the CV estimate, as in the sentence-classification literature).
- ``sst5``: the official SST-5 split (8544/1101/2210) at sentence level (root label, leaves as tokens);
  ``train_phrases=true`` also trains on every distinct labelled phrase of the training trees (off by default).
Tokens are whitespace tokens of the original files (RT is pre-tokenized; SST leaves are tokens), lower-cased by
default; the vocabulary comes from the training split only. No pretrained embeddings (none are available offline).
Readers and encoding live in ``sentence_data.py``; the encoded splits are cached under a key of all that changes them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from normexp.tasks.sentences import data as sd
from normexp.norms import NormFactory
from normexp.tasks.base import Task, classification_metrics
from normexp.tasks.batching import epoch_permutation, sequential_batches
from normexp.tasks.files import cached, verified_sha256

NUM_CLASSES = {"rt": 2, "sst5": 5}


@dataclass
class SentenceConfig:
    name: str = "rt"
    max_len: int = 64  # tokens kept per sentence (RT's longest has 59, SST's 56: nothing is cut by default)
    min_freq: int = 1  # train-token count needed to enter the vocabulary; rarer tokens read as <unk>
    lowercase: bool = True
    batch_size: int = 64
    eval_batch_size: int = 512
    train_size: int = 0  # 0: the whole training split; else its first N examples (smoke profiles)
    word_dropout: float = 0.0  # each training token becomes <unk> with this probability (regularizer)


@dataclass
class RtConfig(SentenceConfig):
    name: str = "rt"
    split: str = "fixed"  # fixed: seeded 8:1:1 | cv10: 10-fold cross-validation, test = fold `fold`
    split_seed: int = 1  # seed of the permutation behind the split (independent of the training seed)
    fold: int = 0  # cv10 only: which fold is test (valid is the next one)


@dataclass
class Sst5Config(SentenceConfig):
    name: str = "sst5"
    train_phrases: bool = False  # also train on every distinct labelled phrase of the training trees


def data_key(cfg: SentenceConfig) -> dict:
    """Everything that changes the encoded splits: the cache key."""
    key = {"version": sd.PREPROCESS_VERSION, "name": cfg.name, "max_len": cfg.max_len, "min_freq": cfg.min_freq,
           "lowercase": cfg.lowercase}
    if cfg.name == "rt":
        key.update(files={f.relpath: f.sha256 for f in sd.RT_FILES.values()}, split=cfg.split,
                   split_seed=cfg.split_seed, fold=cfg.fold)
    else:
        key.update(files={m: s for m, s in sd.SST_MEMBERS.values()}, train_phrases=cfg.train_phrases)
    return key


def read_examples(cfg: SentenceConfig) -> dict[str, list[sd.Example]]:
    if cfg.name == "rt":
        examples = sd.read_rt()
        index = sd.split_indices(len(examples), cfg.split, cfg.split_seed, cfg.fold)
        splits = {name: [examples[i] for i in rows] for name, rows in index.items()}
    elif cfg.name == "sst5":
        splits = {s: sd.read_sst(s, phrases=cfg.train_phrases and s == "train") for s in ("train", "valid", "test")}
    else:
        raise ValueError(f"task.name={cfg.name!r} is not a sentence task: choose rt or sst5")
    if cfg.lowercase:
        splits = {s: [([t.lower() for t in toks], y) for toks, y in ex] for s, ex in splits.items()}
    return splits


def build_data(cfg: SentenceConfig) -> dict:
    splits = read_examples(cfg)
    vocab = sd.build_vocab(splits["train"], cfg.min_freq)
    return {"vocab": vocab, "splits": {s: sd.encode(ex, vocab, cfg.max_len) for s, ex in splits.items()}}


def load_data(cfg: SentenceConfig) -> dict:
    if cfg.max_len < 1 or cfg.min_freq < 1:
        raise ValueError(f"task.max_len={cfg.max_len} and task.min_freq={cfg.min_freq} must both be >= 1")
    # The source files are verified on every run, cache or not: a file changed since the cache was built fails here.
    if cfg.name == "rt":
        sd.rt_file(0), sd.rt_file(1)
    else:
        sd.fetch(sd.SST_ZIP)
    return cached(f"sentences-{cfg.name}", data_key(cfg), lambda: build_data(cfg))


class BucketedBatches:
    """Shuffled batches of similar length: the epoch's permutation is cut into pools of ``POOL`` batches, each pool is
    sorted by length and cut into batches, and the batch order is shuffled. Padding (and so CPU time) falls ~2x against
    plain shuffling; the order depends on seed and epoch alone."""

    POOL = 50

    def __init__(self, tokens: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, epoch: int,
                 word_dropout: float = 0.0):
        self.tokens, self.labels, self.word_dropout = tokens, labels, word_dropout
        self.mask_seed = seed * 1_000_003 + epoch
        order, lengths = epoch_permutation(len(labels), seed, epoch), (tokens != sd.PAD).sum(1)
        batches = []
        for start in range(0, len(order), self.POOL * batch_size):
            pool = order[start : start + self.POOL * batch_size]
            pool = pool[torch.argsort(lengths[pool], stable=True)]
            batches += list(pool.split(batch_size))
        self.batches = [batches[i] for i in epoch_permutation(len(batches), seed + 1, epoch)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.mask_seed)
        for index in self.batches:
            tokens = trim(self.tokens[index])
            if self.word_dropout > 0:  # drawn for every batch in order, so a resumed epoch draws the same masks
                drop = (torch.rand(tokens.shape, generator=generator) < self.word_dropout) & (tokens != sd.PAD)
                tokens = tokens.masked_fill(drop, sd.UNK)
            yield tokens, self.labels[index]


def by_length(tokens: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The split sorted by length, so that evaluation batches carry little padding (metrics ignore the order)."""
    order = torch.argsort((tokens != sd.PAD).sum(1), stable=True)
    return tokens[order], labels[order]


def trim(tokens: torch.Tensor) -> torch.Tensor:
    """Drops the all-padding columns of a batch (batches are padded to the longest sentence of the split)."""
    width = int((tokens != sd.PAD).sum(1).max())
    return tokens[:, : max(width, 1)]


class SentenceTask(Task):
    primary_metric = "accuracy"
    higher_is_better = True

    def __init__(self, cfg: SentenceConfig, model_cfg, seed: int):
        self.cfg, self.model_cfg, self.seed = cfg, model_cfg, seed
        if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
            raise ValueError(f"task.batch_size={cfg.batch_size} and task.eval_batch_size must be >= 1")
        if not 0 <= cfg.word_dropout < 1:
            raise ValueError(f"task.word_dropout={cfg.word_dropout} must be in [0, 1)")
        data = load_data(cfg)
        self.vocab = data["vocab"]
        self.splits = {s: (d["tokens"], d["labels"]) for s, d in data["splits"].items()}
        self.lengths = {s: d["lengths"] for s, d in data["splits"].items()}
        if cfg.train_size > 0:
            self.splits["train"] = tuple(t[: cfg.train_size] for t in self.splits["train"])
        self.splits["valid"], self.splits["test"] = by_length(*self.splits["valid"]), by_length(*self.splits["test"])

    def build_model(self, norm: NormFactory) -> nn.Module:
        from normexp.models.transformer_encoder import TransformerClassifier

        if self.model_cfg.name != "transformer_encoder":
            raise ValueError(f"task={self.cfg.name} supports model=transformer_encoder, "
                             f"not model={self.model_cfg.name}")
        return TransformerClassifier(self.model_cfg, norm, len(self.vocab), NUM_CLASSES[self.cfg.name], sd.PAD)

    def train_batches(self, epoch: int) -> BucketedBatches:
        return BucketedBatches(*self.splits["train"], self.cfg.batch_size, self.seed, epoch, self.cfg.word_dropout)

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        tokens, labels = batch
        return F.cross_entropy(model(tokens), labels), len(labels)

    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        batches = sequential_batches(self.splits[split], self.cfg.eval_batch_size)
        return classification_metrics(model, ((trim(tokens), labels) for tokens, labels in batches))

    def describe(self) -> dict:
        cfg = self.cfg
        out = {
            "sizes": {s: len(t[1]) for s, t in self.splits.items()},
            "label_counts": {s: torch.bincount(t[1], minlength=NUM_CLASSES[cfg.name]).tolist()
                             for s, t in self.splits.items()},
            "vocab_size": len(self.vocab),
            "truncated": {s: int((n > cfg.max_len).sum()) for s, n in self.lengths.items()},
            "unk_rate": {s: round(float((t[0] == sd.UNK).sum() / (t[0] != sd.PAD).sum()), 4)
                         for s, t in self.splits.items()},
            "tokens": "whitespace tokens of the original files" + (", lower-cased" if cfg.lowercase else ""),
            "pretrained_embeddings": None,
        }
        if cfg.name == "rt":
            out["files"] = {f.relpath: verified_sha256(f.relpath) for f in sd.RT_FILES.values()}
            out["encoding"] = "cp1252"
            out["split"] = (f"fixed 8:1:1, split_seed={cfg.split_seed}" if cfg.split == "fixed" else
                            f"cv10 fold {cfg.fold} as test, fold {(cfg.fold + 1) % 10} as valid, "
                            f"split_seed={cfg.split_seed}")
            out.update(split_mode=cfg.split, split_seed=cfg.split_seed, fold=cfg.fold if cfg.split == "cv10" else None)
        else:
            # the members' checksums are checked when the splits are built, from the zip verified here
            out["files"] = {sd.SST_ZIP.relpath: verified_sha256(sd.SST_ZIP.relpath),
                            **{m: s for m, s in sd.SST_MEMBERS.values()}}
            out["split"] = "official SST-5 train/dev/test, sentence level (root labels)"
            out["train_phrases"] = cfg.train_phrases
        return out
