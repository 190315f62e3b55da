"""The two BLEUs of the MT columns.

- ``tokenized_bleu``: what fairseq's ``generate.py --remove-bpe`` prints and the AdaNorm paper reports: corpus BLEU-4
  over the tokenized text (BPE removed), whitespace-split, brevity penalty, no smoothing (= ``multi-bleu.perl`` and
  fairseq's ``libbleu`` scorer). For En-De, fairseq's ``scripts/compound_split_bleu.sh`` first splits hyphenated
  compounds (``a-b`` → ``a ##AT##-##AT## b``) on both sides.
- ``sacre_bleu``: sacreBLEU on detokenized text with its standard 13a tokenization (the RMSNorm paper's kind); the
  signature string says exactly what was computed.
"""
from __future__ import annotations

import re
from typing import Sequence

_COMPOUND = re.compile(r"(\S)-(\S)")


def compound_split(line: str) -> str:
    """``perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g'``."""
    return _COMPOUND.sub(r"\1 ##AT##-##AT## \2", line)


def _check(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("BLEU of an empty corpus")


def tokenized_bleu(hyps: Sequence[str], refs: Sequence[str], split_compounds: bool = False) -> float:
    from sacrebleu.metrics import BLEU

    _check(hyps, refs)
    if split_compounds:
        hyps, refs = [compound_split(h) for h in hyps], [compound_split(r) for r in refs]
    return float(BLEU(tokenize="none", smooth_method="none", force=True).corpus_score(list(hyps), [list(refs)]).score)


def sacre_bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    from sacrebleu.metrics import BLEU

    _check(hyps, refs)
    return float(BLEU().corpus_score(list(hyps), [list(refs)]).score)


def sacrebleu_signature() -> str:
    """The signature of ``sacre_bleu`` (one reference per sentence); sacreBLEU fills it only after a score."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    bleu.corpus_score(["a"], [["a"]])
    return str(bleu.get_signature())
