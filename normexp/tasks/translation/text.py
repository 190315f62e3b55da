"""Text side of MT data preparation: raw readers and the Moses/subword-nmt steps of fairseq's prepare scripts.

Each function re-implements one line of ``prepare-iwslt14.sh`` / ``prepare-wmt14en2de.sh`` (fairseq
``examples/translation``) with the Python ports of its tools: sacremoses for ``tokenizer.perl``,
``normalize-punctuation.perl`` and ``detokenizer.perl``; subword-nmt (the package the scripts clone) for BPE.
"""
from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterable, Sequence

from normexp.tasks.files import DataError

BOM = "\ufeff"
_SEG = re.compile(r'<seg id="[0-9]*">\s*')
_SEG_END = re.compile(r"\s*</seg>\s*")


def read_lines(path: Path) -> list[str]:
    """One sentence per line. Strips a UTF-8 BOM (IWSLT15 tst2013 has one) and tolerates a missing final newline."""
    text = Path(path).read_text(encoding="utf-8")
    if text.startswith(BOM):
        text = text[1:]
    lines = text.split("\n")  # not splitlines(): TED text holds U+2028 and friends inside sentences
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_sgm(path: Path) -> list[str]:
    """The segments of a WMT/IWSLT SGML or XML file: ``grep '<seg id' | sed`` as in fairseq's prepare scripts."""
    return sgm_segments(read_lines(path))


def sgm_segments(lines: Iterable[str]) -> list[str]:
    out = [_SEG_END.sub("", _SEG.sub("", line)).replace("\u2019", "'") for line in lines if "<seg id" in line]
    if not out:
        raise DataError("no <seg id=...> lines found: this is not a WMT/IWSLT SGML file")
    return out


def iwslt_train_tags(lines: Iterable[str]) -> list[str]:
    """``train.tags.*`` of IWSLT archives: drop the <url>/<talkid>/<keywords> lines, unwrap <title>/<description>."""
    out = []
    for line in lines:
        if "<url>" in line or "<talkid>" in line or "<keywords>" in line:
            continue
        for tag in ("<title>", "</title>", "<description>", "</description>"):
            line = line.replace(tag, "")
        out.append(line)
    return out


class Moses:
    """``normalize-punctuation.perl | remove-non-printing-char.perl | tokenizer.perl [-a] | lowercase.perl``."""

    def __init__(self, lang: str, aggressive: bool = False, normalize: bool = False, lowercase: bool = False):
        from sacremoses import MosesPunctNormalizer, MosesTokenizer

        self.aggressive, self.lowercase = aggressive, lowercase
        self.tokenizer = MosesTokenizer(lang=lang)
        self.normalizer = MosesPunctNormalizer(lang=lang, perl_parity=True) if normalize else None

    def __call__(self, line: str) -> str:
        import regex

        if self.normalizer is not None:
            line = regex.sub(r"\p{C}", " ", self.normalizer.normalize(line))
        out = self.tokenizer.tokenize(line, aggressive_dash_splits=self.aggressive, return_str=True, escape=True)
        return out.lower() if self.lowercase else out

    def map(self, lines: Sequence[str], workers: int = 1) -> list[str]:
        if workers <= 1 or len(lines) < 10_000:
            return [self(line) for line in lines]
        from multiprocessing import Pool

        with Pool(workers) as pool:
            return pool.map(self, lines, chunksize=2000)


def detokenize(lines: Sequence[str], lang: str) -> list[str]:
    """``detokenizer.perl -l lang`` (also un-escapes &apos; &quot; … left by the tokenizer)."""
    from sacremoses import MosesDetokenizer

    detok = MosesDetokenizer(lang=lang)
    return [detok.detokenize(line.split()) for line in lines]


def clean_corpus(src: Sequence[str], tgt: Sequence[str], min_len: int, max_len: int, ratio: float,
                 max_word_length: int = 1000) -> tuple[list[str], list[str]]:
    """``clean-corpus-n.perl -ratio R corpus src tgt out MIN MAX``: whitespace squeezed, pairs out of limits dropped."""
    if len(src) != len(tgt):
        raise DataError(f"parallel corpus sides differ in length ({len(src)} vs {len(tgt)} lines)")
    too_long = re.compile(r"[^\s|]{%d}" % (max_word_length + 1))
    out_src, out_tgt = [], []
    for f, e in zip(src, tgt):
        f, e = " ".join(f.replace("|", "").split()), " ".join(e.replace("|", "").split())
        nf, ne = len(f.split()), len(e.split())
        if not f or not e or not (min_len <= nf <= max_len and min_len <= ne <= max_len):
            continue
        if nf / ne > ratio or ne / nf > ratio or too_long.search(f) or too_long.search(e):
            continue
        out_src.append(f)
        out_tgt.append(e)
    return out_src, out_tgt


def learn_bpe(lines: Iterable[str], merges: int, workers: int = 1) -> str:
    """``learn_bpe.py -s MERGES < corpus``: the codes file's text (subword-nmt, min frequency 2 as the scripts)."""
    from contextlib import redirect_stderr

    from subword_nmt.learn_bpe import learn_bpe as _learn

    out = io.StringIO()
    with redirect_stderr(io.StringIO()):  # its per-merge progress bar
        _learn(io.StringIO("\n".join(lines) + "\n"), out, merges, num_workers=workers)
    return out.getvalue()


class Bpe:
    """``apply_bpe.py -c codes``: joins subwords with the ``@@ `` continuation marker fairseq's --remove-bpe strips."""

    def __init__(self, codes: str):
        from subword_nmt.apply_bpe import BPE

        self.bpe = BPE(io.StringIO(codes))

    def __call__(self, line: str) -> str:
        return self.bpe.process_line(line)

    def map(self, lines: Sequence[str]) -> list[str]:
        return [self.bpe.process_line(line) for line in lines]


def remove_bpe(line: str, symbol: str = "@@ ") -> str:
    """fairseq's ``--remove-bpe``: ``(line + " ").replace(symbol, "").rstrip()``."""
    return (line + " ").replace(symbol, "").rstrip()
