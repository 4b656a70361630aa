"""The retention-ratio scaling law of the paper (Eq. 7) and tools to fit it to a sweep.

    γ⁻¹ = a · C^b · L_prefix^c / L_task^d

with γ = k/N the retention ratio, C the compute budget (total generated tokens per query),
L_prefix the pruning checkpoint and L_task the reference (mean full-response) length.

Units: every function here takes **tokens** and divides by ``unit`` (default 1,024) before
applying the law, as the paper does ("normalized to units of 1,024 tokens"). The paper's
"C = 158k" in the scaling section means 158 units, i.e. ``budget=158 * 1024`` tokens here;
only that reading reproduces Tables 14/15 and the worked examples.

- ``law``: the law, the paper's coefficients and tables, the deployment recipe;
- ``fit``: fitting the law to points, and its bootstrap;
- ``sweeps``: γ sweeps replayed on a bank, their best γ per budget, and the law's recipe replayed
  beside them;
- ``progressive``: progressive pruning schedules replayed on a bank, at equal tokens.

Every public name of these modules is importable from ``stoplib.scaling``.
"""

from __future__ import annotations

from .fit import FitResult, bootstrap_fit, fit_scaling_law
from .law import (COEFF_NAMES, PAPER_COEFFICIENTS, UNIT, ArrayLike, ScalingCoefficients, expected_tokens,
                  inverse_retention, optimal_retention, paper_table, recommend_retention)
from .progressive import (PROGRESSIVE_LABELS, PROGRESSIVE_SCHEDULES, at_equal_tokens, progressive_curve,
                          progressive_schedule, schedule_lengths)
from .sweeps import optimal_gamma_from_sweep, recommendation_vs_sweep, replay_sweep

__all__ = [
    "COEFF_NAMES", "PAPER_COEFFICIENTS", "PROGRESSIVE_LABELS", "PROGRESSIVE_SCHEDULES", "UNIT", "ArrayLike",
    "FitResult", "ScalingCoefficients", "at_equal_tokens", "bootstrap_fit", "expected_tokens", "fit_scaling_law",
    "inverse_retention", "optimal_gamma_from_sweep", "optimal_retention", "paper_table", "progressive_curve",
    "progressive_schedule", "recommend_retention", "recommendation_vs_sweep", "replay_sweep", "schedule_lengths",
]
