"""What every metric on a rollout bank reads: the bank as arrays, its prefixes' scores per problem,
and the majority vote over a subset of its paths (with the aggregates that replayed policies and
the no-pruning baseline share)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..grading import majority_vote


@dataclass(frozen=True)
class BankArrays:
    """What replay needs from a bank, as arrays (computed once per bank)."""

    problem_ids: list[str]
    lengths: np.ndarray  # (P, N) generated tokens per path
    finished: np.ndarray  # (P, N) the path ended (finish_reason is not None)
    correct: np.ndarray  # (P, N) bool
    answers: list[list[str | None]]  # (P, N) extracted answers
    kinds: list[str] | None = None  # (P,) problem kinds: votes group equivalent answers

    @property
    def n_paths(self) -> int:
        return int(self.lengths.shape[1])


def bank_arrays(bank: Any) -> BankArrays:
    """Arrays over the first ``bank.n_paths`` paths of every problem of a ``stoplib.bank.Bank``."""
    if isinstance(bank, BankArrays):
        return bank
    n = bank.n_paths
    return BankArrays(
        problem_ids=[bp.problem.id for bp in bank.problems],
        lengths=np.array([[p.generated_tokens for p in bp.paths[:n]] for bp in bank.problems], dtype=np.int64),
        finished=np.array([[p.finish_reason is not None for p in bp.paths[:n]] for bp in bank.problems], dtype=bool),
        correct=np.stack([np.asarray(bp.correct[:n], dtype=bool) for bp in bank.problems]),
        answers=[list(bp.answers[:n]) for bp in bank.problems],
        kinds=[bp.problem.kind for bp in bank.problems],
    )


def score_bank(bank: Any, signal: Any, prefix_len: int, *, n: int | None = None, open_only: bool = True,
               progress: bool = False) -> list[np.ndarray]:
    """Scores of the first ``n`` paths' prefixes at ``prefix_len``, per problem, as the pipeline's
    check computes them: the unfinished prefixes are scored together (one ``signal.score`` call per
    problem, which matters for set-dependent signals such as SlimSC) and finished-early paths get
    NaN. ``open_only=False`` scores every prefix (finished ones included) in one call."""
    n = bank.n_paths if n is None else n
    out = []
    problems = bank.problems
    if progress:
        from tqdm.auto import tqdm

        problems = tqdm(problems, desc=f"score L={prefix_len}", leave=False)
    for bp in problems:
        prefixes = bp.prefixes(prefix_len)[:n]
        rows = [i for i, p in enumerate(prefixes) if not (open_only and p.finished)]
        scores = np.full(len(prefixes), np.nan)
        if rows:
            scores[rows] = np.asarray(signal.score([prefixes[i] for i in rows], bp.problem), dtype=float)
        out.append(scores)
    return out


def score_matrix(scores: Sequence[Sequence[float]] | np.ndarray, n_problems: int, n: int) -> np.ndarray:
    """(P, n) scores of the first ``n`` paths of each problem; ValueError naming a problem short of them."""
    if len(scores) != n_problems:
        raise ValueError(f"scores for {len(scores)} problems, the bank has {n_problems}")
    rows = []
    for p, s in enumerate(scores):
        s = np.asarray(s, dtype=float).reshape(-1)
        if s.size < n:
            raise ValueError(f"problem {p}: {s.size} scores, need at least n={n}")
        rows.append(s[:n])
    return np.stack(rows) if rows else np.zeros((0, n))


def kept_vote(answers: Sequence[str | None], correct: np.ndarray, rows: np.ndarray,
              scores: Sequence[float] | None, kind: str | None) -> tuple[str | None, bool]:
    """The majority vote over the paths ``rows`` of one problem (with their scores) and whether it
    is correct: a kept path with the voted answer is."""
    kept_answers = [answers[i] for i in rows]
    vote = majority_vote(kept_answers, None if scores is None else list(scores), kind)
    if vote is None:
        return None, False
    first = next(i for i, a in zip(rows, kept_answers) if a == vote)
    return vote, bool(correct[first])


def problem_kind(arrays: BankArrays, p: int) -> str | None:
    """Problem ``p``'s kind (how its votes group equivalent answers), or None."""
    return arrays.kinds[p] if arrays.kinds is not None else None


class VoteAndTokens:
    """Aggregates shared by replayed policies and the no-pruning baseline."""

    vote_correct: np.ndarray  # (P,) bool: the majority vote of each problem is correct
    tokens: np.ndarray  # (P,) generated tokens spent

    @property
    def cons(self) -> float:
        """Cons@N: accuracy of the majority vote (over the kept paths, or all n without pruning)."""
        return float(np.mean(self.vote_correct))

    @property
    def total_tokens(self) -> int:
        return int(self.tokens.sum())


def kept_votes(arrays: BankArrays, correct: np.ndarray, kept: np.ndarray,
               vote_scores: np.ndarray) -> tuple[list[str | None], np.ndarray]:
    """Per problem, the vote over the kept paths (with their scores) and whether it is correct."""
    votes, vote_correct = [], np.zeros(len(arrays.problem_ids), dtype=bool)
    for p in range(len(arrays.problem_ids)):
        rows = np.flatnonzero(kept[p])
        votes_p, vote_correct[p] = kept_vote(arrays.answers[p], correct[p], rows, vote_scores[p, rows],
                                             problem_kind(arrays, p))
        votes.append(votes_p)
    return votes, vote_correct
