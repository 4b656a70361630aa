"""The retention-ratio scaling law of the paper (Eq. 7) and tools to fit it to a sweep.

    γ⁻¹ = a · C^b · L_prefix^c / L_task^d

with γ = k/N the retention ratio, C the compute budget (total generated tokens per query),
L_prefix the pruning checkpoint and L_task the reference (mean full-response) length.

Units: every function here takes **tokens** and divides by ``unit`` (default 1,024) before
applying the law, as the paper does ("normalized to units of 1,024 tokens"). The paper's
"C = 158k" in the scaling section means 158 units, i.e. ``budget=158 * 1024`` tokens here;
only that reading reproduces Tables 14/15 and the worked examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from stoplib import paper

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


# --- Fitting ------------------------------------------------------------------------------------
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


# --- Sweeps -------------------------------------------------------------------------------------
def optimal_gamma_from_sweep(df: pd.DataFrame, budgets: Sequence[float] | None = None, *,
                             method: str = "interp", n_budgets: int = 8,
                             group_cols: Sequence[str] = ("prefix_len",)) -> pd.DataFrame:
    """Performance envelope of a γ sweep: at each budget, the best γ and its accuracy.

    ``df`` has one row per sweep point with columns ``gamma, n, prefix_len, tokens, accuracy``
    (tokens = mean total generated tokens per query). Points are split by ``group_cols``
    (one envelope per prefix length by default; add e.g. "task" for several tasks).

    Budgets: ``budgets`` (tokens) if given, else ``n_budgets`` geometrically spaced values
    over each group's token range. Two definitions of "accuracy at a budget":

    * ``"interp"`` (default): each γ's accuracy-vs-tokens curve (its points over N, sorted by
      tokens) is interpolated linearly in log(tokens) at the budget; a γ counts only inside
      its own token range (no extrapolation). This is the paper's "fixed compute budget".
    * ``"bins"``: budgets are upper bin edges; bin j is (budget_{j-1}, budget_j] (the first
      starts at 0) and is reported at its upper edge with the best sweep point inside it.

    Returns columns ``*group_cols, budget, best_gamma, accuracy`` (budgets no γ covers are
    dropped; ties go to the larger γ). Feed ``budget`` and ``1 / best_gamma`` to
    :func:`fit_scaling_law`.
    """
    if method not in ("interp", "bins"):
        raise ValueError(f"method must be 'interp' or 'bins', not {method!r}")
    missing = {"gamma", "tokens", "accuracy", *group_cols} - set(df.columns)
    if missing:
        raise ValueError(f"sweep is missing columns {sorted(missing)}")
    rows = []
    for key, g in df.groupby(list(group_cols), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        lo, hi = float(g.tokens.min()), float(g.tokens.max())
        grid = np.asarray(budgets, dtype=float) if budgets is not None else np.geomspace(lo, hi, n_budgets)
        gammas = sorted(g.gamma.unique(), reverse=True)  # larger γ first: wins ties
        if method == "interp":
            acc = np.full((len(gammas), grid.size), np.nan)
            for i, gam in enumerate(gammas):
                curve = g[g.gamma == gam].sort_values("tokens")
                x, y = np.log(curve.tokens.to_numpy(float)), curve.accuracy.to_numpy(float)
                inside = (np.log(grid) >= x[0] - 1e-12) & (np.log(grid) <= x[-1] + 1e-12)
                acc[i, inside] = np.interp(np.log(grid[inside]), x, y)
            for j, budget in enumerate(grid):
                if np.isnan(acc[:, j]).all():
                    continue
                i = int(np.nanargmax(acc[:, j]))
                rows.append((*key, float(budget), float(gammas[i]), float(acc[i, j])))
        else:
            edges = np.concatenate([[0.0], np.sort(grid)])  # bins (previous edge, edge]
            for left, right in zip(edges[:-1], edges[1:]):
                inside = g[(g.tokens > left) & (g.tokens <= right)]
                if inside.empty:
                    continue
                inside = inside.sort_values(["accuracy", "gamma"], ascending=[False, False])
                best = inside.iloc[0]
                rows.append((*key, float(right), float(best.gamma), float(best.accuracy)))
    return pd.DataFrame(rows, columns=[*group_cols, "budget", "best_gamma", "accuracy"])


def replay_sweep(bank: Any, scores_by_len: dict[int, Sequence[Sequence[float]]], *,
                 gammas: Sequence[float] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2),
                 ns: Sequence[int] = (4, 8, 16, 32, 64)) -> pd.DataFrame:
    """Replay a γ sweep on a bank (no new generation): every (L, N, γ) with k = γN >= 1.

    ``scores_by_len[L]``: per-problem scores of the bank's paths at prefix length L. Returns
    one row per point with ``gamma, n, k, prefix_len, tokens`` (mean generated tokens per
    problem), ``accuracy`` (Cons@N, the vote over kept paths, as in the paper's Figures 5/9)
    and ``avg_kept``; the input of :func:`optimal_gamma_from_sweep`.
    """
    from .metrics import replay

    rows = []
    for length, scores in scores_by_len.items():
        for n in [n for n in ns if n <= bank.n_paths]:
            for gamma in gammas:
                k = gamma * n
                if k < 1 or abs(k - round(k)) > 1e-9:
                    continue
                result = replay(bank, scores, n=n, k=int(round(k)), prefix_len=length)
                rows.append({"gamma": gamma, "n": n, "k": int(round(k)), "prefix_len": length,
                             "tokens": float(result.tokens.mean()), "accuracy": result.cons,
                             "avg_kept": result.avg_kept})
    return pd.DataFrame(rows)


# --- Progressive pruning ------------------------------------------------------------------------
# A small family of schedules, each relative to a base prefix length L and the N launched paths:
# stages of (prefix length as a multiple of L, kept paths as a fraction of N). Every schedule ends
# with N/8 paths running to completion, so at equal N they differ only in how the cut is made.
PROGRESSIVE_SCHEDULES: dict[str, tuple[tuple[float, float], ...]] = {
    "single_L": ((1.0, 1 / 8),),  # the paper's protocol: N -> N/8 at L
    "single_2L": ((2.0, 1 / 8),),  # one cut at the last stage's length: N -> N/8 at 2L
    "two_stage": ((1.0, 1 / 4), (2.0, 1 / 8)),  # N -> N/4 at L -> N/8 at 2L
    "halving": ((1.0, 1 / 2), (1.5, 1 / 4), (2.0, 1 / 8)),  # N -> N/2 at L -> N/4 at 1.5L -> N/8 at 2L
    "early_half": ((0.5, 1 / 2), (1.0, 1 / 8)),  # a cheap first cut before L: N -> N/2 at L/2 -> N/8 at L
}
PROGRESSIVE_LABELS = {"single_L": "single stage at L", "single_2L": "single stage at 2L",
                      "two_stage": "N/4 at L → N/8 at 2L", "halving": "N/2 at L → N/4 at 1.5L → N/8 at 2L",
                      "early_half": "N/2 at L/2 → N/8 at L",
                      "no_pruning": "no pruning"}


def progressive_schedule(relative: Sequence[tuple[float, float]], n: int,
                         prefix_len: int) -> list[tuple[int, int]] | None:
    """The stages ``(round(m·L), f·N)`` of a relative schedule ``[(m, f), ...]``, or None when some
    ``f·N`` is not a positive integer (that N does not fit the schedule)."""
    stages = []
    for multiple, fraction in relative:
        k = fraction * n
        if k < 1 or abs(k - round(k)) > 1e-9:
            return None
        stages.append((max(1, int(round(multiple * prefix_len))), int(round(k))))
    return stages


def schedule_lengths(prefix_len: int,
                     schedules: Mapping[str, Sequence[tuple[float, float]]] = PROGRESSIVE_SCHEDULES) -> list[int]:
    """Every prefix length the schedules check at for base length ``prefix_len`` (to score first)."""
    return sorted({max(1, int(round(m * prefix_len))) for relative in schedules.values() for m, _ in relative})


def progressive_curve(bank: Any, scores_by_len: Mapping[int, Sequence[Sequence[float]]], *, prefix_len: int,
                      ns: Sequence[int] = (8, 16, 32, 64),
                      schedules: Mapping[str, Sequence[tuple[float, float]]] = PROGRESSIVE_SCHEDULES,
                      with_no_pruning: bool = True) -> pd.DataFrame:
    """Replay each schedule of ``schedules`` (relative to ``prefix_len``, see
    ``PROGRESSIVE_SCHEDULES``) at every N of ``ns`` that fits it and the bank.

    ``scores_by_len[L]``: per-problem scores of the bank's paths at L, for every L of
    ``schedule_lengths(prefix_len, schedules)``. Returns one row per (schedule, N) with ``schedule``,
    ``label`` (display name), ``n``, ``k`` (paths run to completion), ``stages`` (e.g.
    ``64→32@36→16@54→8@72``), ``tokens`` (mean generated tokens per problem), ``cons`` (Cons@N),
    ``avg_kept`` (avg@k|N); with ``with_no_pruning``, also the N paths run to completion.
    """
    from .metrics import no_pruning, replay_progressive, schedule_text

    rows = []
    for n in [n for n in ns if n <= bank.n_paths]:
        for name, relative in schedules.items():
            stages = progressive_schedule(relative, n, prefix_len)
            if stages is None:
                continue
            result = replay_progressive(bank, scores_by_len, stages, n=n)
            rows.append({"schedule": name, "label": PROGRESSIVE_LABELS.get(name, name), "n": n, "k": result.k,
                         "stages": schedule_text(stages, n), "tokens": float(result.tokens.mean()),
                         "cons": result.cons, "avg_kept": result.avg_kept})
        if with_no_pruning:
            base = no_pruning(bank, n=n)
            rows.append({"schedule": "no_pruning", "label": PROGRESSIVE_LABELS["no_pruning"], "n": n, "k": n,
                         "stages": str(n), "tokens": float(base.tokens.mean()), "cons": base.cons,
                         "avg_kept": base.avg})
    return pd.DataFrame(rows, columns=["schedule", "label", "n", "k", "stages", "tokens", "cons", "avg_kept"])


def at_equal_tokens(curve: pd.DataFrame, reference: str = "single_L") -> pd.DataFrame:
    """Each point of ``curve`` (from ``progressive_curve``) against the ``reference`` schedule at the
    same tokens: the reference's Cons@N and avg@k|N interpolated linearly in log(tokens) between
    its points over N (NaN outside its token range: no extrapolation; all NaN when the curve has
    no reference point, e.g. no N fits its schedule), and the differences."""
    ref = curve[curve["schedule"] == reference].sort_values("tokens")
    x = np.log(ref["tokens"].to_numpy(float))
    out = curve[curve["schedule"] != reference].copy()
    t = np.log(out["tokens"].to_numpy(float))
    inside = (t >= x[0] - 1e-12) & (t <= x[-1] + 1e-12) if x.size else np.zeros(t.shape, dtype=bool)
    for column in ("cons", "avg_kept"):
        values = np.interp(t, x, ref[column].to_numpy(float)) if x.size else np.full(t.shape, np.nan)
        out[f"{column}_{reference}"] = np.where(inside, values, np.nan)
        out[f"{column}_gain"] = out[column] - out[f"{column}_{reference}"]
    return out.reset_index(drop=True)
