"""AUROC of scores for 0/1 labels: pooled, within problem (each problem's paths ranked against each
other), and of a rollout bank's prefix scores for its paths' correctness (``signal_auroc``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, Sequence

import numpy as np
from scipy.stats import rankdata

from .arrays import bank_arrays, score_matrix


def _as_arrays(scores: Sequence[float], labels: Sequence[int | bool]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.size} vs {y.size}")
    if s.size == 0:
        raise ValueError("scores and labels are empty: an AUROC needs scored examples")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0/1 or booleans")
    return s, y.astype(bool)


def auroc(scores: Sequence[float], labels: Sequence[int | bool]) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n1 n0)); tied scores count 1/2.

    The probability that a random positive (label 1) scores above a random negative. NaN when
    one class is absent.
    """
    s, y = _as_arrays(scores, labels)
    n1 = int(y.sum())
    n0 = y.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks: ties count 1/2
    u = ranks[y].sum() - n1 * (n1 + 1) / 2
    return float(u / (n1 * n0))


@dataclass(frozen=True)
class WithinProblemAUROC:
    """Mean per-group AUROC over the ``n_groups`` groups that have both classes."""

    value: float
    n_groups: int  # groups used (both classes present)
    n_groups_total: int


def within_problem_auroc_detail(
    scores: Sequence[float], labels: Sequence[int | bool], groups: Sequence[Hashable]
) -> WithinProblemAUROC:
    """Per-group (e.g. per-problem) AUROC averaged over the groups with both classes.

    Pruning ranks paths of one problem against each other, so this is the AUROC that matters
    for it; the pooled AUROC also rewards telling easy problems from hard ones.
    """
    s, y = _as_arrays(scores, labels)
    g = list(groups)
    if len(g) != s.size:
        raise ValueError(f"groups and scores differ in length: {len(g)} vs {s.size}")
    index: dict[Hashable, list[int]] = {}
    for i, key in enumerate(g):
        index.setdefault(key, []).append(i)
    values = []
    for rows in index.values():
        value = auroc(s[rows], y[rows])
        if not np.isnan(value):
            values.append(value)
    mean = float(np.mean(values)) if values else float("nan")
    return WithinProblemAUROC(value=mean, n_groups=len(values), n_groups_total=len(index))


def within_problem_auroc(
    scores: Sequence[float], labels: Sequence[int | bool], groups: Sequence[Hashable]
) -> float:
    """Mean per-group AUROC over groups with both classes (NaN if there are none)."""
    return within_problem_auroc_detail(scores, labels, groups).value


@dataclass(frozen=True)
class SignalAUROC:
    """AUROC of prefix scores for path correctness."""

    pooled: float  # all scored paths of all problems together
    within: float  # mean per-problem AUROC over problems with both classes
    n_groups: int  # problems used for ``within``
    n_groups_total: int
    n_scored: int  # scored (non-NaN) paths


def signal_auroc(bank: Any, scores: Sequence[Sequence[float]] | np.ndarray, *, n: int | None = None) -> SignalAUROC:
    """Pooled and within-problem AUROC of ``scores`` (per problem, over the bank's paths) for the
    correctness of the first ``n`` paths. NaN scores (finished-early paths that a check never
    scores, see ``score_bank``) are left out."""
    arrays = bank_arrays(bank)
    n = arrays.n_paths if n is None else n
    s = score_matrix(scores, len(arrays.problem_ids), n)
    y = arrays.correct[:, :n]
    groups = np.broadcast_to(np.arange(len(arrays.problem_ids))[:, None], s.shape)
    ok = ~np.isnan(s)
    if not ok.any():
        raise ValueError("no scored paths (every score is NaN)")
    detail = within_problem_auroc_detail(s[ok], y[ok], groups[ok].tolist())
    return SignalAUROC(auroc(s[ok], y[ok]), detail.value, detail.n_groups, len(arrays.problem_ids), int(ok.sum()))
