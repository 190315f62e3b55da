"""Both BLEUs: tokenized BLEU equals fairseq's own scorer (libbleu, as generate.py prints); sacreBLEU, signature."""
import os
import random
from pathlib import Path

import pytest

from normexp.tasks.translation.bleu import compound_split, sacre_bleu, sacrebleu_signature, tokenized_bleu
from normexp.tasks.translation.text import read_lines
from normexp.cli.train import forget_fairseq_configs

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("NORMEXP_DATA_ROOT", REPO.parent / "shared" / "data"))


def _noisy(refs: list[str], seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for r in refs:
        words = r.split()
        for _ in range(max(1, len(words) // 4)):
            i = rng.randrange(len(words))
            action = rng.random()
            if action < 0.4:
                words[i] = rng.choice(["the", "a", "of", "zzz"])
            elif action < 0.7 and len(words) > 1:
                del words[i]
            else:
                words.insert(i, "and")
        out.append(" ".join(words))
    return out


def _fairseq_bleu(hyps: list[str], refs: list[str]) -> float:
    from fairseq.data import Dictionary
    from fairseq.scoring.bleu import BleuConfig, Scorer

    d = Dictionary()
    scorer = Scorer(BleuConfig(pad=d.pad(), eos=d.eos(), unk=d.unk()))
    for h, r in zip(hyps, refs):  # as generate.py: both sides encoded with add_if_not_exist=True
        scorer.add(d.encode_line(r, add_if_not_exist=True), d.encode_line(h, add_if_not_exist=True))
    forget_fairseq_configs()  # importing fairseq fills Hydra's ConfigStore; later CLI tests compose configs
    return scorer.score()


def test_tokenized_bleu_equals_fairseqs_scorer():
    refs = read_lines(SHARED / "iwslt14_deen/tokenized_lowercased/test.en")[:500]
    hyps = _noisy(refs, seed=0)
    ours = tokenized_bleu(hyps, refs)
    assert 5 < ours < 95
    assert ours == pytest.approx(_fairseq_bleu(hyps, refs), abs=1e-6)
    assert tokenized_bleu(refs, refs) == pytest.approx(100.0)


def test_compound_splitting_as_compound_split_bleu_sh():
    assert compound_split("a well-known long-term plan") == "a well ##AT##-##AT## known long ##AT##-##AT## term plan"
    assert compound_split("x-y-z - -a") == "x ##AT##-##AT## y-z - -a"  # perl s///g: non-overlapping, left to right
    refs = ["die Fußgänger-Ampel ist neu", "ein Schildbürger-Streich"]
    hyps = ["die Fußgänger-Ampel ist alt", "ein Schildbürger-Streich"]
    assert tokenized_bleu(hyps, refs, split_compounds=True) > tokenized_bleu(hyps, refs)


def test_sacrebleu_on_detokenized_text_and_its_signature():
    refs = read_lines(SHARED / "iwslt15_envi/tst2012.en")[:300]
    assert sacre_bleu(refs, refs) == pytest.approx(100.0)
    assert 0 < sacre_bleu(_noisy(refs, seed=1), refs) < 100
    sig = sacrebleu_signature()
    assert sig.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    with pytest.raises(ValueError, match="hypotheses"):
        tokenized_bleu(["a"], ["a", "b"])
