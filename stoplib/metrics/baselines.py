"""The no-pruning baselines on a rollout bank: avg@N, the majority vote over N paths (Cons@N) and
their tokens, and unbiased pass@k."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import VoteAndTokens, bank_arrays, kept_vote, problem_kind


@dataclass
class NoPruningResult(VoteAndTokens):
    """The no-pruning baseline: the first n paths of every problem run to completion."""

    n: int
    problem_ids: list[str]
    accuracy: np.ndarray  # (P,) mean correctness of the n paths (this problem's term of avg@N)
    votes: list[str | None]
    vote_correct: np.ndarray  # (P,) majority vote over the n paths
    tokens: np.ndarray  # (P,)

    @property
    def avg(self) -> float:
        """avg@N."""
        return float(np.mean(self.accuracy))


def no_pruning(bank: Any, *, n: int) -> NoPruningResult:
    """avg@N, the majority vote over n paths (``majority_vote`` without scores: ties to
    the answer seen first) and the tokens of running all n paths."""
    arrays = bank_arrays(bank)
    if not 1 <= n <= arrays.n_paths:
        raise ValueError(f"need 1 <= n <= {arrays.n_paths} (paths in the bank), got n={n}")
    correct = arrays.correct[:, :n]
    votes, vote_correct = [], np.zeros(len(arrays.problem_ids), dtype=bool)
    for p in range(len(arrays.problem_ids)):
        votes_p, vote_correct[p] = kept_vote(arrays.answers[p], correct[p], np.arange(n), None, problem_kind(arrays, p))
        votes.append(votes_p)
    return NoPruningResult(n, list(arrays.problem_ids), correct.mean(axis=1), votes, vote_correct,
                           arrays.lengths[:, :n].sum(axis=1).astype(np.int64))


def pass_at_k(n: int | np.ndarray, c: int | np.ndarray, k: int) -> float | np.ndarray:
    """Unbiased pass@k (Chen et al. 2021, "Evaluating Large Language Models Trained on Code", Eq. 1):
    ``1 - C(n - c, k) / C(n, k)`` for n samples of which c are correct (computed as a stable product)."""
    n_arr, c_arr = np.asarray(n), np.asarray(c)
    if np.any(c_arr < 0) or np.any(c_arr > n_arr) or np.any(k > n_arr) or k < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n_arr.tolist()}, c={c_arr.tolist()}, k={k}")

    def one(nn: int, cc: int) -> float:
        if nn - cc < k:
            return 1.0
        return float(1.0 - np.prod(1.0 - k / np.arange(nn - cc + 1, nn + 1)))

    out = np.vectorize(one, otypes=[float])(n_arr, c_arr)
    return float(out) if out.ndim == 0 else out


def bank_pass_at_k(bank: Any, *, n: int, k: int) -> float:
    """Mean over problems of unbiased pass@k from the first n paths."""
    arrays = bank_arrays(bank)
    c = arrays.correct[:, :n].sum(axis=1)
    return float(np.mean(pass_at_k(np.full_like(c, n), c, k)))
