"""Replay of pruning policies on a rollout bank: one (N, k, L) check, or a progressive schedule of
several, with the online pipeline's exact semantics (avg@k|N, Cons@N, tokens), and grids of them
next to the no-pruning baselines.

``stoplib.pipeline`` (Launch -> Check -> Resume -> vote) on N seeded paths per problem, and
``replay`` on the bank of those same complete paths, give the same kept paths, votes and token
counts (a complete path contains its own prefix at every L, and its remainder is a valid
continuation of that prefix). Rules, as in the pipeline:

* a path is *finished early* if it ended within the first L generated tokens; such paths are
  not checked, are kept, vote (with score NaN, i.e. lowest in the vote's tie-break) and do
  not take one of the k resume slots;
* the other paths are ranked by score, ties to the lower sample index, NaN last
  (``signals.base.top_k``), and the best k are resumed;
* the vote is ``majority_vote`` over the kept paths in sample order, with their scores, counting
  answers the grader finds equivalent as one;
  the vote is correct iff a kept path with that answer is correct (None: incorrect);
* tokens (prompt excluded) = sum over the N paths of min(len, L) + sum over kept unfinished
  paths of (len - L).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .arrays import VoteAndTokens, bank_arrays, kept_votes, score_matrix
from .baselines import bank_pass_at_k, no_pruning


def _top_k_mask(scores: np.ndarray, eligible: np.ndarray, k: int) -> np.ndarray:
    """(P, n) mask of the k best eligible entries per row, ranked exactly as ``signals.base.top_k``
    (higher score first, NaN last, ties to the lower index)."""
    p, n = scores.shape
    index = np.broadcast_to(np.arange(n), (p, n))
    order = np.lexsort((index, -np.nan_to_num(scores), np.isnan(scores), ~eligible), axis=-1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n), (p, n)), axis=-1)
    return eligible & (rank < k)


@dataclass
class ReplayResult(VoteAndTokens):
    """One (N, k, L) policy replayed on a bank; per-problem arrays and the aggregates."""

    n: int
    k: int
    prefix_len: int
    problem_ids: list[str]
    kept: np.ndarray  # (P, n) bool
    finished_early: np.ndarray  # (P, n) bool
    kept_accuracy: np.ndarray  # (P,) mean correctness of the kept paths
    votes: list[str | None]
    vote_correct: np.ndarray  # (P,) bool
    tokens: np.ndarray  # (P,) generated tokens spent (prompt excluded)
    full_tokens: np.ndarray  # (P,) tokens without pruning (the n paths run to completion)

    @property
    def avg_kept(self) -> float:
        """avg@k|N: mean over problems of the kept paths' accuracy."""
        return float(np.mean(self.kept_accuracy))

    @property
    def token_reduction(self) -> float:
        """Relative reduction (Eq. 5) vs running the n paths to completion: 1 - tokens / full tokens."""
        full = int(self.full_tokens.sum())
        return float(1.0 - self.total_tokens / full) if full else 0.0

    def summary(self) -> dict[str, float]:
        return {"n": self.n, "k": self.k, "prefix_len": self.prefix_len, "avg_kept": self.avg_kept,
                "cons": self.cons, "tokens": self.total_tokens, "tokens_per_problem": float(self.tokens.mean()),
                "full_tokens": int(self.full_tokens.sum()), "token_reduction": self.token_reduction,
                "finished_early": float(self.finished_early.mean())}


def replay(bank: Any, scores: Sequence[Sequence[float]] | np.ndarray, *, n: int, k: int, prefix_len: int,
           check_tokens: int = 0) -> ReplayResult:
    """Replay Launch (N = ``n``, L = ``prefix_len``) -> Check (``scores``) -> Resume (top ``k``) -> vote.

    ``bank``: a ``stoplib.bank.Bank`` (or its ``bank_arrays``). ``scores``: per problem, an array
    over the bank's paths (at least the first ``n``) of the scores of each path's prefix at
    ``prefix_len`` (``score_bank`` computes them; entries of finished-early paths are ignored). The
    first ``n`` paths (sample indices 0..n-1) are used. Semantics: see the module docstring.

    ``check_tokens`` (default 0, the pipeline's accounting) adds that many tokens per checked
    (unfinished) prefix, e.g. ``prefix_len`` to charge an external judge's re-encoding of every
    prefix, which is what the paper's Type II token counts in Table 2 look like.
    """
    arrays = bank_arrays(bank)
    if not 1 <= n <= arrays.n_paths:
        raise ValueError(f"need 1 <= n <= {arrays.n_paths} (paths in the bank), got n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if prefix_len < 1:
        raise ValueError(f"prefix_len must be >= 1, got {prefix_len}")
    n_problems = len(arrays.problem_ids)
    s = score_matrix(scores, n_problems, n)
    lengths, correct = arrays.lengths[:, :n], arrays.correct[:, :n]
    early = arrays.finished[:, :n] & (lengths <= prefix_len)
    resumed = _top_k_mask(s, ~early, k)
    kept = early | resumed
    kept_accuracy = (correct & kept).sum(axis=1) / kept.sum(axis=1)
    tokens = np.minimum(lengths, prefix_len).sum(axis=1) + (np.clip(lengths - prefix_len, 0, None) * resumed).sum(axis=1)
    tokens = tokens + int(check_tokens) * (~early).sum(axis=1)
    votes, vote_correct = kept_votes(arrays, correct, kept, np.where(early, np.nan, s))
    return ReplayResult(n, k, prefix_len, list(arrays.problem_ids), kept, early, kept_accuracy, votes,
                        vote_correct, tokens.astype(np.int64), lengths.sum(axis=1).astype(np.int64))


# ---------------------------------------------------------------------------------------------
# Progressive pruning: a schedule of stages [(L_1, k_1), (L_2, k_2), ...], L increasing and k not
# increasing. Launch pauses the N paths at L_1; at stage i the paths still running are checked at
# L_i and the best k_i go on to L_{i+1}; the last stage's survivors run to completion. At every
# stage the rules of ``replay`` apply to the paths that reached it: a path that ended by L_i is
# kept, votes and takes no slot; ties go to the lower sample index. A kept path votes with the
# score of its last check (NaN if it ended before the first). Tokens = sum of min(len, L_1) over
# the N paths + each stage's survivors' tokens from L_i to L_{i+1} (capped by their length) + the
# last survivors' remainders. One stage is ``replay`` exactly.

Schedule = Sequence[tuple[int, int]]


def check_schedule(schedule: Schedule, n: int) -> list[tuple[int, int]]:
    """Validate a progressive schedule for N = ``n`` paths; returns it as a list of int pairs.

    Needs at least one stage, prefix lengths L >= 1 strictly increasing, keep counts with
    1 <= k <= n and never increasing from one stage to the next."""
    try:
        stages = [(int(length), int(k)) for length, k in schedule]
    except (TypeError, ValueError):
        raise ValueError(f"a schedule is a sequence of (prefix_len, k) pairs, got {schedule!r}") from None
    if not stages:
        raise ValueError("the schedule is empty: give at least one (prefix_len, k) stage")
    for i, (length, k) in enumerate(stages):
        if length < 1:
            raise ValueError(f"stage {i}: prefix_len must be >= 1, got {length}")
        if not 1 <= k <= n:
            raise ValueError(f"stage {i}: need 1 <= k <= n={n}, got k={k}")
        if i and length <= stages[i - 1][0]:
            raise ValueError(f"stage {i}: prefix lengths must increase, got {length} after {stages[i - 1][0]}")
        if i and k > stages[i - 1][1]:
            raise ValueError(f"stage {i}: k must not increase, got k={k} after {stages[i - 1][1]}")
    return stages


def schedule_text(schedule: Schedule, n: int) -> str:
    """A schedule written as N -> k_1 @ L_1 -> k_2 @ L_2 ..., e.g. ``64→32@36→8@72``."""
    return "→".join([str(n)] + [f"{k}@{length}" for length, k in schedule])


@dataclass
class ProgressiveResult(ReplayResult):
    """A progressive schedule replayed on a bank: ``k`` is the last stage's k, ``prefix_len`` the
    first stage's L (the Launch pause); ``finished_early`` marks paths that ended before the check
    of the last stage they reached (``stage``)."""

    schedule: tuple[tuple[int, int], ...] = ()
    stage: np.ndarray | None = None  # (P, n) index of the last stage each path reached

    def summary(self) -> dict[str, float]:
        return super().summary() | {"schedule": schedule_text(self.schedule, self.n), "stages": len(self.schedule)}


ScoresAt = Callable[[int, np.ndarray], Sequence[Sequence[float]]]


def replay_progressive(bank: Any, scores_by_length: Mapping[int, Sequence[Sequence[float]]] | ScoresAt,
                       schedule: Schedule, *, n: int) -> ProgressiveResult:
    """Replay Launch (N = ``n``, L_1) -> Check -> keep k_1 -> ... -> keep k_last -> Resume -> vote.

    ``scores_by_length[L]``: per problem, scores of the bank's paths' prefixes at L (as for
    ``replay``), for every L of the schedule; or a callable ``(L, checked) -> scores`` given the
    (P, n) mask of the paths checked at L (set-dependent signals such as SlimSC score only those
    together online). Rules and token accounting: see the comment above; one stage gives exactly
    ``replay(bank, scores_by_length[L], n=n, k=k, prefix_len=L)``.
    """
    arrays = bank_arrays(bank)
    if not 1 <= n <= arrays.n_paths:
        raise ValueError(f"need 1 <= n <= {arrays.n_paths} (paths in the bank), got n={n}")
    stages = check_schedule(schedule, n)
    if not callable(scores_by_length):
        missing = [length for length, _ in stages if length not in scores_by_length]
        if missing:
            raise ValueError(f"no scores for prefix lengths {missing} (have {sorted(scores_by_length)})")
    n_problems = len(arrays.problem_ids)
    lengths, correct = arrays.lengths[:, :n], arrays.correct[:, :n]
    finished = arrays.finished[:, :n]
    running = np.ones_like(correct)  # paths that reach the current stage unfinished so far
    early = np.zeros_like(correct)
    stage = np.zeros(correct.shape, dtype=np.int64)
    last_score = np.full(correct.shape, np.nan)
    tokens = np.zeros(n_problems, dtype=np.int64)
    previous = 0
    for i, (length, k) in enumerate(stages):
        tokens += (np.clip(np.minimum(lengths, length) - previous, 0, None) * running).sum(axis=1)
        ended = running & finished & (lengths <= length)
        checked = running & ~ended
        raw = scores_by_length(length, checked.copy()) if callable(scores_by_length) else scores_by_length[length]
        s = score_matrix(raw, n_problems, n)
        last_score = np.where(checked, s, last_score)
        stage[running] = i
        early |= ended
        running = _top_k_mask(s, checked, k)
        previous = length
    tokens += (np.clip(lengths - previous, 0, None) * running).sum(axis=1)
    kept = early | running
    kept_accuracy = (correct & kept).sum(axis=1) / kept.sum(axis=1)
    votes, vote_correct = kept_votes(arrays, correct, kept, last_score)
    first_len, last_k = stages[0][0], stages[-1][1]
    return ProgressiveResult(n, last_k, first_len, list(arrays.problem_ids), kept, early, kept_accuracy, votes,
                             vote_correct, tokens, lengths.sum(axis=1).astype(np.int64),
                             schedule=tuple(stages), stage=stage)


ScoresFor = Callable[[int, int], Sequence[Sequence[float]]]


def replay_grid(bank: Any, scores: Mapping[Any, Sequence[Sequence[float]]] | ScoresFor, *, ns: Sequence[int],
                ks: Sequence[int], prefix_lens: Sequence[int]) -> "Any":
    """A pandas DataFrame of ``replay(...).summary()`` for every (n, k, L) with k <= n, plus the
    no-pruning ``avg_full`` / ``cons_full`` / ``pass_at_k`` of the same n.

    ``scores``: a callable ``(n, L) -> scores``, or a mapping keyed by L or by (n, L) (use (n, L)
    for set-dependent signals, whose scores depend on which prefixes are scored together).
    """
    import pandas as pd

    arrays = bank_arrays(bank)

    def lookup(n: int, length: int):
        if callable(scores):
            return scores(n, length)
        return scores[(n, length)] if (n, length) in scores else scores[length]

    base = {n: no_pruning(arrays, n=n) for n in ns}
    rows = []
    for length in prefix_lens:
        for n in ns:
            s = lookup(n, length)
            for k in ks:
                if k > n:
                    continue
                row = replay(arrays, s, n=n, k=k, prefix_len=length).summary()
                row.update(avg_full=base[n].avg, cons_full=base[n].cons,
                           pass_at_k=bank_pass_at_k(arrays, n=n, k=k))
                rows.append(row)
    return pd.DataFrame(rows)
