"""The arc-standard transition system (Nivre 2004) as Chen & Manning (2014) use it: static oracle, features, greedy
decoding batched across sentences, and the attachment-score evaluation.

Tokens are numbered 1..n, 0 is ROOT. The stack starts as [ROOT], the buffer as 1..n. Transitions (``L`` labels):
0 = SHIFT, 1 + l = LEFT-ARC(l) (s1 → s2, pop s2), 1 + L + l = RIGHT-ARC(l) (s2 → s1, pop s1). An unlabeled treebank
has one dummy label, so its parser has the three transitions SHIFT, LEFT, RIGHT.
LEFT-ARC needs s2 ≠ ROOT; RIGHT-ARC onto ROOT only once the buffer is empty, so every parse has a single root word.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

SHIFT = 0
# Punctuation, by gold POS tag, that the scores exclude: the English set of Chen & Manning (2014), kept as CoreNLP's
# nndep ParsingSystem.getPunctuationTags ("match punctuation tags used in Danqi's paper"). -LRB- -RRB- # $ are scored.
PUNCT_TAGS = ("``", "''", ".", ",", ":")
NULL = -1  # a feature position with no token
# The 18 token positions of Chen & Manning: s1-s3, b1-b3; lc1 rc1 lc2 rc2 of s1 and s2; lc1(lc1) rc1(rc1) of s1, s2.
# Words and tags of all 18 are features; relation labels of the last 12 (the children).
N_POSITIONS, N_CHILD_POSITIONS = 18, 12


class Configuration:
    """One sentence's parser state; children lists are kept in attachment order, which arc-standard makes
    outside-in for left children (so ``lefts[-1]`` is the leftmost) and inside-out for right ones (``rights[-1]``
    is the rightmost)."""

    __slots__ = ("n", "stack", "next", "heads", "labels", "lefts", "rights")

    def __init__(self, n: int):
        self.n, self.stack, self.next = n, [0], 1
        self.heads, self.labels = [-1] * (n + 1), [-1] * (n + 1)
        self.lefts: list[list[int]] = [[] for _ in range(n + 1)]
        self.rights: list[list[int]] = [[] for _ in range(n + 1)]

    def terminal(self) -> bool:
        return self.next > self.n and len(self.stack) == 1

    def legal(self) -> tuple[bool, bool, bool]:
        """Whether SHIFT, LEFT-ARC and RIGHT-ARC may be taken."""
        depth = len(self.stack)
        return self.next <= self.n, depth > 2, depth > 2 or (depth == 2 and self.next > self.n)

    def apply(self, transition: int, n_labels: int) -> None:
        if transition == SHIFT:
            self.stack.append(self.next)
            self.next += 1
            return
        s1 = self.stack.pop()
        s2 = self.stack.pop()
        if transition <= n_labels:  # LEFT-ARC: s1 heads s2
            head, dep, label = s1, s2, transition - 1
            self.lefts[s1].append(s2)
        else:  # RIGHT-ARC: s2 heads s1
            head, dep, label = s2, s1, transition - 1 - n_labels
            self.rights[s2].append(s1)
        self.heads[dep], self.labels[dep] = head, label
        self.stack.append(head)

    def positions(self) -> list[int]:
        """The 18 feature positions (token numbers, ``NULL`` where there is none)."""
        stack, b, n = self.stack, self.next, self.n
        s = [stack[-k] if len(stack) >= k else NULL for k in (1, 2, 3)]
        out = s + [b + k if b + k <= n else NULL for k in (0, 1, 2)]
        lefts, rights = self.lefts, self.rights
        grand = []
        for top in s[:2]:
            if top == NULL:
                out += [NULL] * 4
                grand += [NULL, NULL]
                continue
            left, right = lefts[top], rights[top]
            lc1, rc1 = (left[-1] if left else NULL), (right[-1] if right else NULL)
            out += [lc1, rc1, left[-2] if len(left) > 1 else NULL, right[-2] if len(right) > 1 else NULL]
            grand += [lefts[lc1][-1] if lc1 != NULL and lefts[lc1] else NULL,
                      rights[rc1][-1] if rc1 != NULL and rights[rc1] else NULL]
        return out + grand


def oracle(c: Configuration, heads: Sequence[int], labels: Sequence[int], pending: list[int], n_labels: int) -> int:
    """The static oracle's transition. ``heads``/``labels`` are gold (index 0 unused); ``pending[t]`` counts the gold
    children of t not attached yet. Raises ValueError when the gold tree cannot be reached (non-projective)."""
    shift_ok, left_ok, right_ok = c.legal()
    if len(c.stack) >= 2:
        s1, s2 = c.stack[-1], c.stack[-2]
        if left_ok and heads[s2] == s1:
            return 1 + labels[s2]
        if right_ok and heads[s1] == s2 and pending[s1] == 0:
            return 1 + n_labels + labels[s1]
    if shift_ok:
        return SHIFT
    raise ValueError("arc-standard cannot build this gold tree: it is not projective or has several root words")


def oracle_transitions(heads: Sequence[int], labels: Sequence[int] | None = None, n_labels: int = 1,
                       visit: Callable[[Configuration], None] | None = None) -> list[int]:
    """The oracle's transition sequence for a gold tree (``heads[i]`` is the head of token i + 1; ``labels`` label
    ids or None). ``visit`` sees every configuration before its transition (to collect features)."""
    n = len(heads)
    gold_heads, gold_labels = [-1, *heads], [0, *(labels or [0] * n)]
    pending = [0] * (n + 1)
    for h in heads:
        pending[h] += 1
    c, out = Configuration(n), []
    while not c.terminal():
        if visit is not None:
            visit(c)
        t = oracle(c, gold_heads, gold_labels, pending, n_labels)
        if t != SHIFT:
            pending[c.stack[-1] if t <= n_labels else c.stack[-2]] -= 1
        c.apply(t, n_labels)
        out.append(t)
    return out


def legal_mask(configs: Sequence[Configuration], n_labels: int) -> torch.Tensor:
    """(B, 1 + 2L) bool: the transitions each configuration may take."""
    legal = torch.tensor([c.legal() for c in configs], dtype=torch.bool)
    return torch.cat([legal[:, :1], legal[:, 1:2].expand(-1, n_labels), legal[:, 2:3].expand(-1, n_labels)], 1)


def greedy_parse(lengths: Sequence[int], featurize: Callable[[list[int], list[Configuration]], torch.Tensor],
                 score: Callable[[torch.Tensor], torch.Tensor], n_labels: int) -> list[Configuration]:
    """Parses all sentences at once: each step featurizes every unfinished sentence (``featurize(indices, configs)``),
    scores them in one batch and applies each one's best legal transition. Returns the final configurations."""
    configs = [Configuration(n) for n in lengths]
    active = [i for i, c in enumerate(configs) if not c.terminal()]
    while active:
        batch = [configs[i] for i in active]
        scores = score(featurize(active, batch)).float().cpu()
        best = scores.masked_fill(~legal_mask(batch, n_labels), float("-inf")).argmax(-1).tolist()
        for c, t in zip(batch, best):
            c.apply(t, n_labels)
        active = [i for i in active if not configs[i].terminal()]
    return configs


def attachment_scores(tags: Sequence[Sequence[str]], gold_heads: Sequence[Sequence[int]],
                      pred_heads: Sequence[Sequence[int]], gold_labels: Sequence[Sequence] | None = None,
                      pred_labels: Sequence[Sequence] | None = None,
                      punct_tags: Sequence[str] = PUNCT_TAGS) -> dict[str, float]:
    """UAS (and LAS when labels are given) in percent over the tokens whose gold tag is not punctuation."""
    punct = set(punct_tags)
    scored = heads_right = both_right = 0
    for i, (sent_tags, gold, pred) in enumerate(zip(tags, gold_heads, pred_heads, strict=True)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {i}: {len(pred)} predicted heads for {len(gold)} tokens")
        for j, tag in enumerate(sent_tags):
            if tag in punct:
                continue
            scored += 1
            if gold[j] == pred[j]:
                heads_right += 1
                both_right += gold_labels is not None and gold_labels[i][j] == pred_labels[i][j]
    if scored == 0:
        raise ValueError("no token to score: every token is punctuation")
    out = {"uas": 100.0 * heads_right / scored}
    if gold_labels is not None:
        out["las"] = 100.0 * both_right / scored
    return out
