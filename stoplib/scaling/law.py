"""The retention-ratio law itself (Eq. 7): the paper's coefficients, γ⁻¹ and γ* for a budget, the
deployment recipe (N, k) and Tables 14/15 recomputed. Lengths in tokens, divided by ``unit``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from .. import paper

UNIT = 1024
ArrayLike = float | Sequence[float] | np.ndarray  # scalars give floats, arrays give arrays
COEFF_NAMES: tuple[str, ...] = ("a", "b", "c", "d")


@dataclass(frozen=True)
class ScalingCoefficients:
    """Coefficients of γ⁻¹ = a·C^b·L_prefix^c / L_task^d (lengths in units of 1,024 tokens)."""

    a: float
    b: float
    c: float
    d: float

    def as_dict(self) -> dict[str, float]:
        return {"a": self.a, "b": self.b, "c": self.c, "d": self.d}


# The printed values (3 significant figures) reproduce every cell of Tables 14 and 15 to the
# printed 2 decimals; the tables were evidently computed from exactly these rounded values.
PAPER_COEFFICIENTS = ScalingCoefficients(**paper.SCALING_LAW)


def inverse_retention(budget: ArrayLike, prefix_len: ArrayLike, task_len: ArrayLike,
                      coeffs: ScalingCoefficients = PAPER_COEFFICIENTS, *, unit: float = UNIT) -> float | np.ndarray:
    """γ⁻¹ from the law; ``budget``, ``prefix_len`` and ``task_len`` in tokens (scalars or arrays).

    Returns a float for scalar inputs, an array otherwise.
    """
    c_u = np.asarray(budget, dtype=float) / unit
    lp_u = np.asarray(prefix_len, dtype=float) / unit
    lt_u = np.asarray(task_len, dtype=float) / unit
    out = coeffs.a * c_u**coeffs.b * lp_u**coeffs.c / lt_u**coeffs.d
    return float(out) if np.ndim(out) == 0 else out


def optimal_retention(budget: ArrayLike, prefix_len: ArrayLike, task_len: ArrayLike,
                      coeffs: ScalingCoefficients = PAPER_COEFFICIENTS, *, unit: float = UNIT) -> float | np.ndarray:
    """γ* = 1 / :func:`inverse_retention` (not clipped; values above 1 mean "do not prune")."""
    inv = inverse_retention(budget, prefix_len, task_len, coeffs, unit=unit)
    return 1.0 / inv if np.ndim(inv) == 0 else 1.0 / np.asarray(inv)


def expected_tokens(n: int, k: int, prefix_len: float, task_len: float) -> float:
    """Cost model: all N paths generate the prefix, the k kept ones run on to ``task_len``.

    Tokens per query = N·L_prefix + k·(L_task − L_prefix) (the paper's token accounting, §4.1 and
    Eq. 5). Paths shorter than the prefix are ignored.
    """
    return n * prefix_len + k * max(task_len - prefix_len, 0.0)


def _nearest_power_of_two(x: float) -> int:
    return int(2 ** round(math.log2(max(x, 1.0))))


def recommend_retention(budget: float, prefix_len: float, task_len: float, *, n_max: int | None = None,
                        power_of_two: bool = False, coeffs: ScalingCoefficients = PAPER_COEFFICIENTS,
                        unit: float = UNIT) -> dict:
    """Deployment recipe: γ* from the law and integers (N, k) that spend about ``budget`` tokens.

    Steps (all lengths in tokens):

    1. γ* = 1/γ⁻¹ from the law, clipped to at most 1 (γ⁻¹ < 1 means "keep every path").
    2. Continuous N that exhausts the budget under :func:`expected_tokens`:
       N₀ = budget / (L_prefix + γ*·(L_task − L_prefix)).
    3. k = max(1, round(γ*·N₀)); then N = round(k/γ*) (or the nearest power of two in log2
       with ``power_of_two=True``), and N ≥ k.
    4. With ``n_max``, N is capped at n_max and k recomputed as max(1, round(γ*·N)) ≤ N.

    The realized ratio k/N and the expected tokens are returned next to the targets, since
    the rounding moves both (most at small budgets, where k is 1 or 2).
    """
    inv = inverse_retention(budget, prefix_len, task_len, coeffs, unit=unit)
    gamma = min(1.0, 1.0 / inv)
    n0 = budget / (prefix_len + gamma * max(task_len - prefix_len, 0.0))
    k = max(1, round(gamma * n0))
    n = _nearest_power_of_two(k / gamma) if power_of_two else round(k / gamma)
    n = max(n, k)
    if n_max is not None and n > n_max:
        n = n_max
        k = min(n, max(1, round(gamma * n)))
    return {
        "inv_gamma": inv, "gamma": gamma, "n": int(n), "k": int(k), "realized_gamma": k / n,
        "budget": float(budget), "expected_tokens": float(expected_tokens(n, k, prefix_len, task_len)),
        "prefix_len": prefix_len, "task_len": task_len,
    }


def paper_table(name: int | str, coeffs: ScalingCoefficients = PAPER_COEFFICIENTS) -> pd.DataFrame:
    """Table 14 or 15 recomputed from the law, in the printed layout, rounded to 2 decimals.

    ``name`` is 14, 15, "table14" or "table15". Budget columns are the printed "k" numbers,
    plugged in as that many units of 1,024 tokens.
    """
    number = int(str(name).lower().removeprefix("table"))
    printed = paper.recommendation_table(number)
    task_len = paper.RECOMMENDATION_TASK_LEN[number]
    budgets = np.asarray(printed.columns, dtype=float) * UNIT
    values = [np.round(inverse_retention(budgets, lp, task_len, coeffs), 2) for lp in printed.index]
    return pd.DataFrame(values, index=printed.index.copy(), columns=printed.columns.copy())
