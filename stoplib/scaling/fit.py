"""Fitting the retention-ratio law to (budget, prefix length, task length, γ⁻¹) points by least
squares in log space, and a bootstrap of the fit."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .law import COEFF_NAMES, PAPER_COEFFICIENTS, UNIT, ArrayLike, ScalingCoefficients, inverse_retention


@dataclass
class FitResult:
    """Result of :func:`fit_scaling_law`: coefficients, which were fixed, and log-space fit quality."""

    coeffs: ScalingCoefficients
    fixed: dict[str, float]
    n_points: int
    r2_log: float  # R² of log γ⁻¹ (NaN when every coefficient is fixed or y is constant)
    rmse_log: float  # RMSE of log γ⁻¹ residuals
    notes: list[str] = field(default_factory=list)

    def predict(self, budget: ArrayLike, prefix_len: ArrayLike, task_len: ArrayLike, *,
                unit: float = UNIT) -> float | np.ndarray:
        return inverse_retention(budget, prefix_len, task_len, self.coeffs, unit=unit)


def _design(budgets, prefix_lens, task_lens, unit: float) -> dict[str, np.ndarray]:
    """Columns of the log-linear model: log γ⁻¹ = 1·log a + b·log C + c·log L_p + d·(−log L_t)."""
    log_c = np.log(np.asarray(budgets, dtype=float) / unit)
    n = log_c.size
    cols = {
        "a": np.ones(n),
        "b": log_c,
        "c": np.log(np.broadcast_to(np.asarray(prefix_lens, dtype=float), (n,)) / unit),
        "d": -np.log(np.broadcast_to(np.asarray(task_lens, dtype=float), (n,)) / unit),
    }
    return cols


def _solve(cols: dict[str, np.ndarray], y: np.ndarray, fixed: dict[str, float]) -> tuple[dict[str, float], np.ndarray]:
    """Least squares for the free coefficients; returns (coeffs, residuals). Raises on rank loss."""
    target = y.copy()
    for name, value in fixed.items():
        target -= (math.log(value) if name == "a" else value) * cols[name]
    free = [n for n in COEFF_NAMES if n not in fixed]
    values = dict(fixed)
    if free:
        x = np.column_stack([cols[n] for n in free])
        beta, _, rank, _ = np.linalg.lstsq(x, target, rcond=None)
        if rank < len(free):
            raise np.linalg.LinAlgError(f"coefficients {free} are not identifiable from these points "
                                        f"(rank {rank}); fix some of them with fix=...")
        for n, v in zip(free, beta):
            values[n] = math.exp(v) if n == "a" else float(v)
        target = target - x @ beta
    return values, target


def _auto_fix(cols: dict[str, np.ndarray], fix: dict[str, float] | None) -> tuple[dict[str, float], list[str]]:
    """Fix b/c/d to the paper's values when their input does not vary (not identifiable)."""
    fixed = dict(fix or {})
    unknown = set(fixed) - set(COEFF_NAMES)
    if unknown:
        raise ValueError(f"unknown coefficients in fix: {sorted(unknown)}")
    notes = []
    what = {"b": "budget", "c": "prefix_len", "d": "task_len"}
    for name in ("b", "c", "d"):
        if name not in fixed and np.ptp(cols[name]) < 1e-12:
            value = getattr(PAPER_COEFFICIENTS, name)
            fixed[name] = value
            notes.append(f"{what[name]} does not vary, so {name} is not identifiable: fixed to the "
                         f"paper's {name}={value} (a absorbs the rest)")
    return fixed, notes


def fit_scaling_law(budgets: Sequence[float], prefix_lens: Sequence[float] | float,
                    task_lens: Sequence[float] | float, inv_gammas: Sequence[float], *,
                    fix: dict[str, float] | None = None, unit: float = UNIT) -> FitResult:
    """Fit log γ⁻¹ = log a + b·log C + c·log L_p − d·log L_t by ordinary least squares.

    Inputs in tokens (scalars broadcast for ``prefix_lens``/``task_lens``), divided by ``unit``.
    ``fix`` holds coefficients to keep at given values, e.g. ``{"d": 4.55}``. A coefficient
    whose input never varies is fixed to the paper's value automatically and noted in
    ``FitResult.notes`` (with one task length, d cannot be told apart from a).
    """
    y = np.log(np.asarray(inv_gammas, dtype=float))
    cols = _design(budgets, prefix_lens, task_lens, unit)
    if y.shape != cols["a"].shape:
        raise ValueError("budgets and inv_gammas differ in length")
    fixed, notes = _auto_fix(cols, fix)
    values, resid = _solve(cols, y, fixed)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float((resid**2).sum())
    free = len(COEFF_NAMES) - len(fixed)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 and free else float("nan")
    return FitResult(coeffs=ScalingCoefficients(**values), fixed=fixed, n_points=int(y.size), r2_log=r2,
                     rmse_log=math.sqrt(ss_res / y.size), notes=notes)


def bootstrap_fit(budgets: Sequence[float], prefix_lens: Sequence[float] | float,
                  task_lens: Sequence[float] | float, inv_gammas: Sequence[float], *,
                  fix: dict[str, float] | None = None, n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95, unit: float = UNIT) -> pd.DataFrame:
    """Percentile bootstrap (``scipy.stats.bootstrap``, points resampled with replacement) of
    :func:`fit_scaling_law`.

    Returns one row per coefficient (index a, b, c, d) with columns ``estimate`` (full-data
    fit), ``low``, ``high`` (the ``level`` interval) and ``fixed``. The fixed set is decided on
    the full data and kept for every resample; rank-deficient resamples are skipped, and
    their number is stored in ``df.attrs["n_skipped"]``.
    """
    full = fit_scaling_law(budgets, prefix_lens, task_lens, inv_gammas, fix=fix, unit=unit)
    y = np.log(np.asarray(inv_gammas, dtype=float))
    cols = _design(budgets, prefix_lens, task_lens, unit)

    def coefficients(idx: np.ndarray) -> np.ndarray:
        try:
            values, _ = _solve({k: v[idx] for k, v in cols.items()}, y[idx], full.fixed)
        except np.linalg.LinAlgError:
            return np.full(len(COEFF_NAMES), np.nan)
        return np.array([values[n] for n in COEFF_NAMES])

    res = stats.bootstrap((np.arange(y.size),), coefficients, n_resamples=n_boot, confidence_level=level,
                          method="percentile", vectorized=False, rng=np.random.default_rng(seed))
    draws = res.bootstrap_distribution.T  # (n_boot, coefficient)
    ok = ~np.isnan(draws).any(axis=1)
    skipped = int((~ok).sum())
    if not ok.any():
        raise ValueError("every bootstrap resample was rank-deficient; fix more coefficients")
    arr = draws[ok]
    alpha = (1.0 - level) / 2.0
    est = full.coeffs.as_dict()
    df = pd.DataFrame({
        "estimate": [est[n] for n in COEFF_NAMES],
        "low": np.quantile(arr, alpha, axis=0),
        "high": np.quantile(arr, 1.0 - alpha, axis=0),
        "fixed": [n in full.fixed for n in COEFF_NAMES],
    }, index=pd.Index(COEFF_NAMES, name="coefficient"))
    df.attrs["n_skipped"] = skipped
    df.attrs["notes"] = full.notes
    return df
