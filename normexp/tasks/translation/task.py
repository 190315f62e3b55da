"""Machine translation on fairseq (the AdaNorm paper's En-De, De-En and En-Vi columns), driven by our one trainer.

One task class serves ``iwslt14_deen``, ``iwslt15_envi`` and ``wmt14_ende``; the data catalog (``mt_corpora``) and the
split specs choose the files. fairseq supplies the pieces, used as a library: ``Dictionary`` and mmap indexed datasets
(``mt_data``), ``LanguagePairDataset`` batched by token count exactly as ``fairseq-train`` does (sampler frozen from
``numpy_seed(seed + 1)``, batches shuffled with ``seed + epoch`` each epoch; ``--update-freq`` is the trainer's),
the label-smoothed cross-entropy criterion, the Transformer (``normexp.models.fairseq_transformer``) and
``SequenceGenerator`` beam search. Units are target tokens. ``evaluate("test")`` reports both BLEUs (``bleu.py``).
"""
from __future__ import annotations

import json
import math
import types
from dataclasses import dataclass

import torch
from torch import nn

from normexp.norms import NormFactory
from normexp.tasks.base import Task, model_device, move_to
from normexp.tasks.translation.corpora import LANGS

TASK_NAMES = tuple(LANGS)


@dataclass
class TranslationConfig:
    name: str = "iwslt14_deen"  # iwslt14_deen | iwslt15_envi | wmt14_ende
    # splits: a corpus of the task (mt_corpora.CORPORA) with an optional slice, e.g. "valid[:6783]"
    train: str = "train"
    valid: str = "valid"
    test: str = "test"
    bpe_codes: str = ""  # BPE codes (path under a data root) applied to raw corpora (newstest2014's SGML)
    bpe_merges: int = 0  # with no bpe_codes: learn this many merges on a raw train split (smoke profiles)
    joined_dictionary: bool = True  # fairseq-preprocess --joined-dictionary
    dict_threshold: int = 0  # --thresholdsrc/--thresholdtgt
    max_tokens: int = 4096  # --max-tokens (per batch; source or target side, whichever is longer, padded)
    label_smoothing: float = 0.1
    beam: int = 5  # generate.py --beam
    lenpen: float = 1.0
    max_len_a: float = 0.0
    max_len_b: int = 200
    gen_batch_size: int = 128  # generate.py --batch-size (sentences)
    valid_bleu: bool = False  # also beam-search the valid split at each evaluation (slow)
    split_compounds: bool = False  # tokenized BLEU after compound splitting (fairseq compound_split_bleu.sh)


class TranslationTask(Task):
    primary_metric = "loss"  # fairseq's checkpoint_best: lowest valid label-smoothed loss
    higher_is_better = False

    def __init__(self, cfg: TranslationConfig, model_cfg, seed: int):
        from normexp.tasks.translation.data import DataOptions, load_dicts, load_split, prepare

        if cfg.name not in TASK_NAMES:
            raise ValueError(f"task.name={cfg.name!r} is not a translation task: choose one of {TASK_NAMES}")
        for key in ("max_tokens", "beam", "gen_batch_size"):
            if getattr(cfg, key) < 1:
                raise ValueError(f"task.{key}={getattr(cfg, key)} must be >= 1")
        self.cfg, self.model_cfg, self.seed = cfg, model_cfg, seed
        self.src, self.tgt = LANGS[cfg.name]
        options = DataOptions((cfg.train, cfg.valid, cfg.test), cfg.bpe_codes, cfg.bpe_merges,
                              cfg.joined_dictionary, cfg.dict_threshold)
        self.folder = prepare(cfg.name, options)
        self.manifest = json.loads((self.folder / "manifest.json").read_text())
        self.dicts = load_dicts(self.folder, cfg.name)
        self.data = {split: load_split(self.folder, cfg.name, split, self.dicts, shuffle=split == "train")
                     for split in ("train", "valid", "test")}
        self._frozen = None
        self._criterion = None

    # ---- model and loss ---------------------------------------------------------------------------------------------
    def build_model(self, norm: NormFactory) -> nn.Module:
        from normexp.models.fairseq_transformer import build_fairseq_transformer

        if self.model_cfg.name != "fairseq_transformer":
            raise ValueError(f"task={self.cfg.name} supports model=fairseq_transformer, "
                             f"not model={self.model_cfg.name}")
        return build_fairseq_transformer(self.model_cfg, self.dicts[self.src], self.dicts[self.tgt], norm)

    @property
    def criterion(self):
        if self._criterion is None:
            from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion

            task = types.SimpleNamespace(target_dictionary=self.dicts[self.tgt])
            self._criterion = LabelSmoothedCrossEntropyCriterion(task, False, self.cfg.label_smoothing)
        return self._criterion

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        """Label-smoothed loss per target token of one batch (``--update-freq`` is the trainer's ``update_freq``)."""
        model = _Model(model) if model is not _unwrapped(model) else model
        loss, tokens, _ = self.criterion(model, batch)
        return loss / tokens, tokens

    # ---- batches ----------------------------------------------------------------------------------------------------
    def _train_sampler(self):
        """fairseq-train's frozen batches: size-sorted indices (ties shuffled), too-long pairs dropped, max_tokens."""
        if self._frozen is None:
            from fairseq.data import data_utils

            data = self.data["train"]
            with data_utils.numpy_seed(self.seed + 1):
                indices = data.ordered_indices()
            limit = min(self.model_cfg.max_source_positions or 1024, self.cfg.max_tokens)
            indices, self.dropped = data.filter_indices_by_size(indices, (limit, limit))
            self._frozen = data.batch_by_size(indices, max_tokens=self.cfg.max_tokens, required_batch_size_multiple=8)
        return self._frozen

    def train_batches(self, epoch: int):
        from fairseq.data import iterators

        data = self.data["train"]
        return iterators.EpochBatchIterator(data, data.collater, self._train_sampler(), seed=self.seed,
                                            epoch=epoch + 1).next_epoch_itr(shuffle=True)  # fairseq epochs count from 1

    def _eval_batches(self, split: str, max_tokens: int | None, max_sentences: int | None):
        data = self.data[split]
        for index in data.batch_by_size(data.ordered_indices(), max_tokens=max_tokens, max_sentences=max_sentences):
            yield data.collater([data[i] for i in index])

    # ---- evaluation -------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module, split: str) -> dict[str, float]:
        device = model_device(model)
        sums, tokens = torch.zeros(2, dtype=torch.float64, device=device), 0  # loss, nll: read once, at the end
        for sample in self._eval_batches(split, self.cfg.max_tokens, None):
            value, size, logged = self.criterion(model, move_to(sample, device))
            sums += torch.stack([value.detach(), logged["nll_loss"]]).double()
            tokens += size
        loss, nll = sums.tolist()
        metrics = {"loss": loss / tokens, "nll_loss": nll / tokens, "ppl": math.exp(min(nll / tokens, 50.0))}
        if split == "test" or self.cfg.valid_bleu:
            metrics.update(self.bleu(model, split))
        return metrics

    def translate(self, model: nn.Module, split: str) -> tuple[list[str], list[str]]:
        """Beam search over ``split``: (hypotheses, references), tokenized with BPE removed, in corpus order —
        exactly the H and T lines of ``generate.py --remove-bpe`` (references decoded with unknowns escaped)."""
        from fairseq.sequence_generator import SequenceGenerator
        from fairseq.utils import strip_pad

        d, cfg, device = self.dicts[self.tgt], self.cfg, model_device(model)
        generator = SequenceGenerator([model], d, beam_size=cfg.beam, max_len_a=cfg.max_len_a,
                                      max_len_b=cfg.max_len_b, len_penalty=cfg.lenpen)
        strip = generator.symbols_to_strip_from_output
        out = {}
        for sample in self._eval_batches(split, None, cfg.gen_batch_size):
            hypos = generator.generate([model], move_to(sample, device))
            for i, sid in enumerate(sample["id"].tolist()):
                target = strip_pad(sample["target"][i], d.pad()).int().cpu()
                out[sid] = (d.string(hypos[i][0]["tokens"].int().cpu(), "@@ ", extra_symbols_to_ignore=strip),
                            d.string(target, "@@ ", escape_unk=True, extra_symbols_to_ignore=strip))
        ordered = [out[i] for i in sorted(out)]
        return [h for h, _ in ordered], [r for _, r in ordered]

    def bleu(self, model: nn.Module, split: str) -> dict[str, float]:
        from normexp.tasks.translation.bleu import sacre_bleu, tokenized_bleu
        from normexp.tasks.translation.data import read_refs
        from normexp.tasks.translation.text import detokenize

        hyps, refs = self.translate(model, split)
        return {"bleu": tokenized_bleu(hyps, refs, self.cfg.split_compounds),
                "sacrebleu": sacre_bleu(detokenize(hyps, self.tgt), read_refs(self.folder, self.cfg.name, split))}

    def describe(self) -> dict:
        from normexp.tasks.translation.bleu import sacrebleu_signature

        self._train_sampler()
        m = self.manifest
        return {
            "files": m["key"]["files"], "splits": m["splits"], "sizes": m["sizes"], "dict_sizes": m["dict_sizes"],
            "unk_rate": m["unk_rate"], "train_pairs_dropped_too_long": len(self.dropped),
            "train_batches_per_epoch": len(self._frozen), "cache": str(self.folder),
            "bleu": "tokenized BLEU-4 of generate.py --remove-bpe (multi-bleu, no smoothing)"
                    + (", compound splitting" if self.cfg.split_compounds else ""),
            "sacrebleu": sacrebleu_signature(), "sacrebleu_reference": m["references"]["test"],
            "beam": {"beam": self.cfg.beam, "lenpen": self.cfg.lenpen,
                     "max_len": [self.cfg.max_len_a, self.cfg.max_len_b]},
        }


def _unwrapped(model: nn.Module) -> nn.Module:
    """The fairseq model inside DDP and torch.compile wrappers."""
    while isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        model = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model._orig_mod
    return model


class _Model:
    """A wrapped (DDP, compiled) fairseq model as fairseq's criterion needs it: forward through the wrapper (gradients
    synchronised, compiled code), everything else (``get_normalized_probs``, ``get_targets``) from the model."""

    def __init__(self, wrapped: nn.Module):
        self.wrapped, self.model = wrapped, _unwrapped(wrapped)

    def __call__(self, *args, **kwargs):
        return self.wrapped(*args, **kwargs)

    def __getattr__(self, name: str):
        return getattr(self.model, name)
