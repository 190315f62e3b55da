"""Dependency parsing on the Penn Treebank (the AdaNorm paper's PTB column): a Chen & Manning (2014) style greedy
arc-standard parser, scored by UAS (and LAS when the treebank has labels) without punctuation, in percent.

Data (``task.source``):
- ``sample`` (default): NLTK's 10% WSJ sample (files wsj_0001-0199, no relation labels), split by file number:
  0001-0159 train, 0160-0179 dev, 0180-0199 test by default. Its scores are not comparable to the full PTB's.
- ``conll``: CoNLL-X or CoNLL-U files (``task.train_file`` / ``dev_file`` / ``test_file``), e.g. the full PTB's
  sections 02-21 / 22 / 23 converted to Stanford dependencies, the papers' setting (LDC licence, not shipped).
Training examples are the static oracle's (configuration, transition) pairs of the training trees; trees the oracle
cannot build (non-projective, several root words) are counted in the record and left out of training, but every
tree is parsed and scored in dev and test.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from normexp.tasks.parsing.arc_standard import (PUNCT_TAGS, Configuration, attachment_scores, greedy_parse,
                                        oracle_transitions, N_CHILD_POSITIONS, N_POSITIONS)
from normexp.norms import NormFactory
from normexp.tasks.base import Task, model_device
from normexp.tasks.batching import ShuffledBatches, sequential_batches
from normexp.tasks.parsing.trees import Sentence, conll_splits, is_projective, sample_splits

NULL_ID, UNK_ID, ROOT_ID = 0, 1, 2  # ids shared by the word and tag vocabularies
SPECIALS = ("<null>", "<unk>", "<root>")


@dataclass
class ParsingConfig:
    name: str = "ptb"
    source: str = "sample"  # sample: NLTK's WSJ sample zip, split by file | conll: CoNLL-X/CoNLL-U files
    sample_train: str = "0001-0159"  # WSJ file numbers of each split (source=sample)
    sample_dev: str = "0160-0179"
    sample_test: str = "0180-0199"
    train_file: str = ""  # source=conll: absolute, or relative to a data root
    dev_file: str = ""
    test_file: str = ""
    train_size: int = 0  # 0: every training sentence; else the first N (smoke profiles)
    lowercase: bool = True  # word features are lower-cased
    min_word_count: int = 2  # training words seen fewer times are <unk> (so that <unk> is trained)
    punct_tags: list[str] = field(default_factory=lambda: list(PUNCT_TAGS))  # gold tags not scored
    batch_size: int = 512  # oracle examples per update
    eval_batch_size: int = 4096


def vocabulary(counts: Counter, min_count: int = 1) -> dict[str, int]:
    keep = sorted(item for item, count in counts.items() if count >= min_count)
    return {item: i for i, item in enumerate((*SPECIALS, *keep))}


class ParsingTask(Task):
    primary_metric = "uas"
    higher_is_better = True

    def __init__(self, cfg: ParsingConfig, model_cfg, seed: int):
        self.cfg, self.model_cfg, self.seed = cfg, model_cfg, seed
        if cfg.source == "sample":
            self.sentences, self.files = sample_splits(
                {"train": cfg.sample_train, "valid": cfg.sample_dev, "test": cfg.sample_test})
        elif cfg.source == "conll":
            self.sentences, self.files = conll_splits(
                {"train": cfg.train_file, "valid": cfg.dev_file, "test": cfg.test_file})
        else:
            raise ValueError(f"task.source={cfg.source!r} is not valid: choose sample or conll")
        if cfg.train_size > 0:
            self.sentences["train"] = self.sentences["train"][: cfg.train_size]
        train = self.sentences["train"]
        self.labeled = all(s.labels is not None for s in train)
        self.words = vocabulary(Counter(self._word(w) for s in train for w in s.words), cfg.min_word_count)
        self.tags = vocabulary(Counter(t for s in train for t in s.tags))
        self.labels = sorted({lab for s in train for lab in s.labels}) if self.labeled else ["_"]
        self.label_ids = {lab: i for i, lab in enumerate(self.labels)}
        self.encoded = {split: [self._encode(s) for s in sents] for split, sents in self.sentences.items()}
        self.examples, self.unbuildable = {}, {}
        for split in self.sentences:
            self.examples[split], self.unbuildable[split] = self._oracle_examples(split)

    # ---- data -------------------------------------------------------------------------------------------------------
    def _word(self, word: str) -> str:
        return word.lower() if self.cfg.lowercase else word

    def _encode(self, s: Sentence) -> tuple[list[int], list[int]]:
        """Word and tag ids of ROOT, token 1, ..., token n."""
        words = [ROOT_ID] + [self.words.get(self._word(w), UNK_ID) for w in s.words]
        return words, [ROOT_ID] + [self.tags.get(t, UNK_ID) for t in s.tags]

    def featurize(self, c: Configuration, encoded: tuple[list[int], list[int]]) -> list[int]:
        """The feature row of a configuration: 18 word ids, 18 tag ids, (labeled treebanks) 12 label ids."""
        words, tags = encoded
        positions = c.positions()
        row = [words[p] if p >= 0 else NULL_ID for p in positions] + [tags[p] if p >= 0 else NULL_ID for p in positions]
        if self.labeled:  # label id + 1; 0 is NULL
            row += [c.labels[p] + 1 if p >= 0 else 0 for p in positions[N_POSITIONS - N_CHILD_POSITIONS :]]
        return row

    def _oracle_examples(self, split: str) -> tuple[tuple[torch.Tensor, torch.Tensor], int]:
        """(features, gold transition) of every configuration the oracle visits, and how many trees it cannot build."""
        rows, unbuildable = [], 0
        golds: list[int] = []
        for sentence, encoded in zip(self.sentences[split], self.encoded[split]):
            # a dev/test label unseen in training takes label 0 in the oracle loss (LAS compares the strings)
            labels = [self.label_ids.get(lab, 0) for lab in sentence.labels] if self.labeled else None
            visited: list[list[int]] = []
            try:
                transitions = oracle_transitions(sentence.heads, labels, len(self.labels),
                                                 visit=lambda c: visited.append(self.featurize(c, encoded)))
            except ValueError:
                unbuildable += 1
                continue
            rows += visited
            golds += transitions
        width = 2 * N_POSITIONS + (N_CHILD_POSITIONS if self.labeled else 0)
        features = torch.tensor(rows, dtype=torch.long).view(-1, width)
        return (features, torch.tensor(golds, dtype=torch.long)), unbuildable

    # ---- the protocol -----------------------------------------------------------------------------------------------
    def build_model(self, norm: NormFactory) -> nn.Module:
        from normexp.models.parser_mlp import ParserMLP

        if self.model_cfg.name != "parser_mlp":
            raise ValueError(f"task=ptb supports model=parser_mlp, not model={self.model_cfg.name}")
        features = (N_POSITIONS, N_POSITIONS, N_CHILD_POSITIONS if self.labeled else 0)
        vocab = (len(self.words), len(self.tags), len(self.labels) + 1)
        return ParserMLP(self.model_cfg, norm, vocab, features, 1 + 2 * len(self.labels))

    def train_batches(self, epoch: int) -> ShuffledBatches:
        return ShuffledBatches(self.examples["train"], self.cfg.batch_size, self.seed, epoch)

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        features, gold = batch
        return F.cross_entropy(model(features), gold), len(gold)

    @torch.no_grad()
    def parse(self, model: nn.Module, split: str) -> list[Configuration]:
        """Greedy parses of every sentence of ``split``, all sentences batched at each step."""
        device, encoded = model_device(model), self.encoded[split]

        def featurize(indices: list[int], configs: list[Configuration]) -> torch.Tensor:
            rows = [self.featurize(c, encoded[i]) for i, c in zip(indices, configs)]
            return torch.tensor(rows, dtype=torch.long, device=device)

        return greedy_parse([len(s) for s in self.sentences[split]], featurize, model, len(self.labels))

    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        device = model_device(model)
        total, count = torch.zeros((), dtype=torch.float64, device=device), 0  # read once, at the end
        for features, gold in sequential_batches(self.examples[split], self.cfg.eval_batch_size):
            total += F.cross_entropy(model(features.to(device)).float(), gold.to(device), reduction="sum")
            count += len(gold)
        total = float(total)
        sentences, parses = self.sentences[split], self.parse(model, split)
        gold_labels = [s.labels for s in sentences] if self.labeled else None
        pred_labels = [[self.labels[lab] for lab in c.labels[1:]] for c in parses] if self.labeled else None
        scores = attachment_scores([s.tags for s in sentences], [s.heads for s in sentences],
                                   [c.heads[1:] for c in parses], gold_labels, pred_labels, self.cfg.punct_tags)
        return {"loss": total / max(count, 1), **scores}

    def describe(self) -> dict:
        punct = set(self.cfg.punct_tags)
        return {
            "source": self.cfg.source,
            "files": self.files,
            "sentences": {split: len(s) for split, s in self.sentences.items()},
            "tokens": {split: sum(map(len, s)) for split, s in self.sentences.items()},
            "scored_tokens": {split: sum(t not in punct for x in s for t in x.tags) for split, s in self.sentences.items()},
            "non_projective": {split: sum(not is_projective(x.heads) for x in s) for split, s in self.sentences.items()},
            "oracle_unbuildable": self.unbuildable,
            "note": "trees the arc-standard oracle cannot build (non-projective or several roots) are left out of "
                    "training and of the oracle loss, but parsed and scored in valid/test",
            "oracle_examples": {split: len(e[1]) for split, e in self.examples.items()},
            "labeled": self.labeled,
            "vocab": {"words": len(self.words), "tags": len(self.tags), "labels": len(self.labels) if self.labeled else 0},
            "punct_tags": list(self.cfg.punct_tags),
            "lowercase": self.cfg.lowercase,
            "min_word_count": self.cfg.min_word_count,
        }
