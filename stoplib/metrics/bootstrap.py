"""Bootstrap intervals of a mean over problems (``scipy.stats.bootstrap``), plain and paired."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class BootstrapCI:
    """Percentile bootstrap interval of a mean over problems (``scipy.stats.bootstrap``)."""

    estimate: float  # the mean on the actual problems
    low: float
    high: float
    level: float
    n_boot: int
    p_value: float | None = None  # paired variant: two-sided bootstrap p-value of "mean difference = 0"


def _check_values(values: Sequence[float], name: str = "values") -> np.ndarray:
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(v).any():
        raise ValueError(f"{name} contain NaN")
    return v


def _check_level(level: float, n_boot: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level={level!r}: need 0 < level < 1")
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r}: need n_boot >= 1")


def _mean_bootstrap(samples: tuple[np.ndarray, ...], statistic, n_boot: int, seed: int, level: float):
    """``scipy.stats.bootstrap`` with the percentile method (well defined for a constant sample,
    where BCa is not), problems resampled with replacement (jointly when several samples)."""
    return stats.bootstrap(samples, statistic, n_resamples=n_boot, confidence_level=level,
                           method="percentile", paired=len(samples) > 1, vectorized=True,
                           batch=max(1, 2_000_000 // samples[0].size), rng=np.random.default_rng(seed))


def bootstrap_ci(per_problem_values: Sequence[float], n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> BootstrapCI:
    """Percentile bootstrap of the mean over problems (problems resampled with replacement)."""
    _check_level(level, n_boot)
    v = _check_values(per_problem_values)
    ci = _mean_bootstrap((v,), np.mean, n_boot, seed, level).confidence_interval
    return BootstrapCI(float(v.mean()), float(ci.low), float(ci.high), level, n_boot)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a - b, axis=axis)


def paired_bootstrap_ci(values_a: Sequence[float], values_b: Sequence[float], n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> BootstrapCI:
    """Bootstrap of the mean difference a - b between two methods on the same problems (the same
    resampled problems for both: ``paired=True``), with a two-sided bootstrap p-value
    ``min(1, 2 * min(P*(d <= 0), P*(d >= 0)))``."""
    _check_level(level, n_boot)
    a, b = _check_values(values_a, "values_a"), _check_values(values_b, "values_b")
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.size} vs {b.size}")
    res = _mean_bootstrap((a, b), _mean_difference, n_boot, seed, level)
    boots = res.bootstrap_distribution
    p = min(1.0, 2.0 * min(float(np.mean(boots <= 0)), float(np.mean(boots >= 0))))
    ci = res.confidence_interval
    return BootstrapCI(float((a - b).mean()), float(ci.low), float(ci.high), level, n_boot, p)
