"""Type I — external, non-learnable: surface heuristics on the generated text.

These signals read only the decoded text of the prefixes (no model states, nothing trained).
They need a way to decode token ids: pass ``tokenizer=`` (the generator's tokenizer; decoded
with ``skip_special_tokens=True``) or ``decode=`` (any ``ids -> str`` callable). Only the
generated prefix is decoded, not the prompt (it is the same for every path of a problem).

Both signals here are *set-dependent* (``set_dependent = True``): a prefix's score depends on
the other prefixes scored with it. Score exactly the prefixes the pipeline's check would score
(the unfinished ones among the first N); ``stoplib.metrics.score_bank`` does that for replay.

* ``slimsc_jaccard`` — SlimSC-style redundancy pruning (Hong et al., "Slim-SC: Thought Pruning
  for Efficient Scaling with Self-Consistency", arXiv 2509.13990; the STOP paper's Type I
  baseline, App. C.5, "pairwise Jaccard similarity ... prunes trajectories that exhibit high
  semantic redundancy"). Slim-SC itself compares thought embeddings with cosine similarity
  against a threshold and removes one chain of each too-similar pair, chosen at random ("RP") or
  the one more similar to the rest ("DP", diversity-based). The STOP paper uses Jaccard
  similarity and a top-8-of-64 selection, without giving the unit or the rule; ours is below.
* ``step_consensus`` — agreement of a prefix's completed steps with the other prefixes'
  (self-consistency, Wang et al. 2023, applied to intermediate steps as in Path-Consistency,
  Zhu et al. 2024, arXiv 2409.01281): paths whose steps most other paths also wrote are kept.
  It is the opposite bet to SlimSC's (typicality vs diversity).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..engines.base import ReasoningPath
from ..problems import Problem
from .base import Signal, SignalInfo, register

Decode = Callable[[Sequence[int]], str]
UNITS = ("words", "chars", "tokens")


def text_decoder(tokenizer: Any = None, decode: Decode | None = None) -> Decode | None:
    """``decode`` if given, else ``tokenizer.decode(ids, skip_special_tokens=True)``, else None."""
    if decode is not None:
        return decode
    if tokenizer is not None:
        return lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True)
    return None


class TextSignal(Signal):
    """Base class for signals that read decoded text."""

    set_dependent = False

    def __init__(self, tokenizer: Any = None, decode: Decode | None = None) -> None:
        self._decode = text_decoder(tokenizer, decode)

    def texts(self, prefixes: Sequence[ReasoningPath]) -> list[str]:
        """The decoded generated prefix of each path."""
        if self._decode is None:
            raise ValueError(f"signal {self.info.name!r} reads text: construct it with tokenizer= or decode=")
        return [self._decode(p.token_ids) for p in prefixes]


# --------------------------------------------------------------------------------------------
# units and similarity


def unit_set(text: str | None, token_ids: Sequence[int], unit: str = "words", ngram: int = 1) -> frozenset:
    """The set of ``ngram``-grams of ``unit`` in a prefix.

    ``unit``: "words" (whitespace/newline-separated tokens of the decoded text, so a toy step
    line ``c:9*7+3=6`` is one word), "chars" (characters of the text) or "tokens" (the token
    ids themselves; needs no decoding). An item with fewer than ``ngram`` units gives the one
    n-gram of all its units (so only an empty prefix has an empty set).
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if ngram < 1:
        raise ValueError(f"ngram must be >= 1, got {ngram}")
    if unit == "tokens":
        seq: Sequence[Any] = list(token_ids)
    else:
        if text is None:
            raise ValueError(f"unit {unit!r} needs the decoded text")
        seq = text.split() if unit == "words" else list(text)
    if not seq:
        return frozenset()
    if ngram == 1:
        return frozenset(seq)
    if len(seq) < ngram:
        return frozenset([tuple(seq)])
    return frozenset(tuple(seq[i:i + ngram]) for i in range(len(seq) - ngram + 1))


def incidence(sets: Sequence[frozenset]) -> np.ndarray:
    """Binary matrix (N, U): row i marks the units of set i (U = units of all sets)."""
    vocab: dict[Any, int] = {}
    for s in sets:
        for u in s:
            vocab.setdefault(u, len(vocab))
    mat = np.zeros((len(sets), max(1, len(vocab))), dtype=np.float64)
    for i, s in enumerate(sets):
        if s:
            mat[i, [vocab[u] for u in s]] = 1.0
    return mat


def jaccard_matrix(sets: Sequence[frozenset]) -> np.ndarray:
    """Pairwise Jaccard similarity |A∩B| / |A∪B| (N, N); two empty sets have similarity 1."""
    a = incidence(sets)
    inter = a @ a.T
    size = a.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        sim = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 1.0)
    return sim


def slimsc_elimination_order(sim: np.ndarray, sample_indices: Sequence[int]) -> list[int]:
    """Rows of ``sim`` in the order the greedy redundancy rule drops them; the last is the survivor.

    Rule, repeated while more than one prefix remains (R = the remaining prefixes):

    1. s* = the highest similarity between two different members of R;
    2. the candidates are the members of every pair of R with similarity s*;
    3. drop the candidate with the highest mean similarity to the other members of R;
       ties go to the higher sample index.

    Similarities and means are compared after rounding to 12 decimals, so that mathematically
    equal values tie. The order does not depend on k.
    """
    sim = np.round(np.asarray(sim, dtype=np.float64), 12)
    n = sim.shape[0]
    if sim.shape != (n, n):
        raise ValueError(f"similarity matrix must be square, got {sim.shape}")
    idx_all = np.asarray(sample_indices)
    if idx_all.shape != (n,):
        raise ValueError(f"{len(idx_all)} sample indices for {n} prefixes")
    alive = list(range(n))
    order: list[int] = []
    while len(alive) > 1:
        sub = sim[np.ix_(alive, alive)]
        off = sub.copy()
        np.fill_diagonal(off, -np.inf)
        best = off.max()
        candidate = (off == best).any(axis=1)
        mean = np.round((sub.sum(axis=1) - np.diag(sub)) / (len(alive) - 1), 12)
        rows = [i for i in range(len(alive)) if candidate[i]]
        drop = max(rows, key=lambda i: (mean[i], idx_all[alive[i]]))
        order.append(alive.pop(drop))
    order.extend(alive)
    return order


@register(SignalInfo("slimsc_jaccard", "I", "external", False,
                     "SlimSC-style redundancy pruning: greedily drop the most redundant prefix "
                     "(pairwise Jaccard similarity of word sets); score = elimination round"))
class SlimSCJaccard(TextSignal):
    """Redundancy pruning as a score (see the module docstring for the sources).

    SlimSC is a selection rule, not a per-path score. The rule (``slimsc_elimination_order``):
    compute the pairwise Jaccard similarity of the prefixes' unit sets (default: word sets);
    while more than one prefix remains, take the most similar remaining pair(s) and drop the
    member with the higher mean similarity to the rest (ties: the higher sample index).
    Selecting k of N = stopping when k remain.

    Score of a prefix = the round at which it was dropped (0 = first dropped; the last survivor
    gets N - 1). Scores are distinct, so ``top_k(scores, k)`` returns exactly the k prefixes
    that remain when the greedy rule is stopped at k, for every k. The elimination order does not
    depend on k (we always run it down to one survivor): k only sets the stopping point.
    """

    set_dependent = True

    def __init__(self, tokenizer: Any = None, decode: Decode | None = None, unit: str = "words",
                 ngram: int = 1) -> None:
        super().__init__(tokenizer, decode)
        unit_set("", [], unit, ngram)  # validate
        self.unit = unit
        self.ngram = ngram

    def sets(self, prefixes: Sequence[ReasoningPath]) -> list[frozenset]:
        texts = [None] * len(prefixes) if self.unit == "tokens" else self.texts(prefixes)
        return [unit_set(t, p.token_ids, self.unit, self.ngram) for t, p in zip(texts, prefixes)]

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        if not prefixes:
            return np.zeros(0)
        order = slimsc_elimination_order(jaccard_matrix(self.sets(prefixes)), [p.sample_index for p in prefixes])
        scores = np.empty(len(prefixes))
        scores[order] = np.arange(len(prefixes), dtype=float)
        return scores


def split_steps(text: str, sep: str = "\n", drop_partial: bool = False) -> list[str]:
    """Steps of a text: split on ``sep``, stripped, empty ones removed. ``drop_partial`` drops the
    last step when the text does not end with ``sep`` (a step cut by the prefix boundary)."""
    if not sep:
        raise ValueError("the step separator must be non-empty")
    parts = text.split(sep)
    if drop_partial and parts and not text.endswith(sep):
        parts = parts[:-1]
    return [s.strip() for s in parts if s.strip()]


@register(SignalInfo("step_consensus", "I", "external", False,
                     "agreement of a prefix's completed steps with the other prefixes' steps "
                     "(self-consistency on intermediate steps)"))
class StepConsensus(TextSignal):
    """score_i = mean over the distinct completed steps s of prefix i of
    (number of other prefixes that contain s) / (N - 1).

    Steps are the text split on ``step_sep`` (default one newline: one toy step per line; use
    "\\n\\n" for paragraph-level steps of real models), stripped, compared exactly. The last step
    of an unfinished prefix is dropped unless the text ends with the separator (it was cut by the
    prefix boundary), unless ``drop_partial=False``. A prefix with no completed step, or N = 1,
    scores 0. Rationale: self-consistency (Wang et al., 2023) votes on final answers; on a
    prefix, the intermediate results are the only answers available, and a step most paths agree
    on is more likely right (Path-Consistency, Zhu et al. 2024, reuses the most consistent
    prefixes). It is set-dependent, like SlimSC, and bets the other way (typical beats diverse).
    """

    set_dependent = True

    def __init__(self, tokenizer: Any = None, decode: Decode | None = None, step_sep: str = "\n",
                 drop_partial: bool = True) -> None:
        super().__init__(tokenizer, decode)
        split_steps("", step_sep)  # validate
        self.step_sep = step_sep
        self.drop_partial = drop_partial

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        n = len(prefixes)
        if n == 0:
            return np.zeros(0)
        sets = [frozenset(split_steps(t, self.step_sep, self.drop_partial and not p.finished))
                for t, p in zip(self.texts(prefixes), prefixes)]
        if n == 1:
            return np.zeros(1)
        a = incidence(sets)
        others = a.sum(axis=0) - 1.0  # per unit: how many *other* prefixes hold it (if i holds it)
        size = a.sum(axis=1)
        agree = (a * others[None, :]).sum(axis=1)
        return np.where(size > 0, agree / np.where(size > 0, size, 1.0) / (n - 1), 0.0)
