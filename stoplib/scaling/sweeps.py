"""γ sweeps replayed on a rollout bank, and their performance envelope: the best γ at each budget
(the points :func:`~stoplib.scaling.fit.fit_scaling_law` takes)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd


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
    from ..metrics import replay

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


def recommendation_vs_sweep(bank: Any, scores: Sequence[Sequence[float]], sweep: pd.DataFrame, coeffs: Any, *,
                            prefix_len: int, task_len: float, budgets: Sequence[float] | None = None,
                            n_budgets: int = 6) -> pd.DataFrame:
    """The law's deployment recipe replayed on the bank, beside the sweep's best γ at the same tokens.

    At each budget (tokens per problem; default ``n_budgets`` geometric values over the sweep's
    token range at ``prefix_len``) :func:`~stoplib.scaling.law.recommend_retention` with ``coeffs``
    (a ``ScalingCoefficients``, e.g. a fit's) picks (N, k) with N at most the bank's paths; that
    (N, k) is replayed with ``scores`` (the bank's scores at ``prefix_len``). ``best_accuracy`` is
    the sweep's envelope (:func:`optimal_gamma_from_sweep`) at the tokens the recipe actually
    spent, ``gap`` = recipe minus envelope (≤ 0 up to interpolation; NaN outside the sweep's range).
    """
    from ..metrics import bank_arrays, replay
    from .law import recommend_retention

    sub = sweep[sweep["prefix_len"] == prefix_len]
    if sub.empty:
        raise ValueError(f"the sweep has no points at prefix_len={prefix_len} "
                         f"(it has {sorted(sweep['prefix_len'].unique())})")
    grid = (np.asarray(budgets, dtype=float) if budgets is not None
            else np.geomspace(sub.tokens.min(), sub.tokens.max(), n_budgets))
    n_max = bank_arrays(bank).n_paths
    rows = []
    for budget in grid:
        plan = recommend_retention(float(budget), prefix_len, task_len, n_max=n_max, coeffs=coeffs)
        result = replay(bank, scores, n=plan["n"], k=plan["k"], prefix_len=prefix_len)
        tokens = float(result.tokens.mean())
        best = optimal_gamma_from_sweep(sub, budgets=[tokens])
        rows.append({"budget": float(budget), "n": plan["n"], "k": plan["k"], "gamma": plan["realized_gamma"],
                     "tokens": tokens, "accuracy": result.cons,
                     "best_gamma": float(best.best_gamma.iloc[0]) if len(best) else float("nan"),
                     "best_accuracy": float(best.accuracy.iloc[0]) if len(best) else float("nan")})
    out = pd.DataFrame(rows)
    out["gap"] = out["accuracy"] - out["best_accuracy"]
    return out
