"""Progressive pruning schedules (several checks, relative to a base prefix length L and the N
launched paths) replayed on a rollout bank, and compared with a single check at equal tokens."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd


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
    from ..metrics import no_pruning, replay_progressive, schedule_text

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
