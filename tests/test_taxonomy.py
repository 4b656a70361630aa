"""Notebook 03's tables reuse scores computed once (same numbers as scoring again)."""

from __future__ import annotations

import numpy as np
import pytest

from stoplib import taxonomy
from stoplib.config import resolve
from tests.test_metrics import HAND, HAND_SCORES


class FixedScores:
    """A per-path signal whose scores are read from a table (counts how often it is asked)."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, prefixes, problem=None):
        self.calls += 1
        row = next(i for i, bp in enumerate(HAND.problems) if bp.problem.id == problem.id)
        return np.array([HAND_SCORES[row][p.sample_index] for p in prefixes])


def test_budget_curve_reuses_given_scores():
    scored = FixedScores()
    fresh = taxonomy.budget_curve(HAND, {"stop": scored}, prefix_len=5, ns=(2, 4))
    assert scored.calls == len(HAND.problems)  # scored once for every N
    given = [np.array(row) for row in HAND_SCORES]
    unused = FixedScores()
    reused = taxonomy.budget_curve(HAND, {"stop": unused}, prefix_len=5, ns=(2, 4), scores={"stop": given})
    assert unused.calls == 0
    assert fresh.equals(reused)
    short = [row[:2] for row in given]  # scores of too few paths for N = 4 are not used
    taxonomy.budget_curve(HAND, {"stop": unused}, prefix_len=5, ns=(2, 4), scores={"stop": short})
    assert unused.calls == len(HAND.problems)


def test_each_stop_variant_is_named_as_its_signal():
    from stoplib.stages import VARIANTS, variant_configs

    assert set(VARIANTS) == set(taxonomy.LEARNED) - {"verifier"}
    assert all(taxonomy.signal_info(name)["type"] == "IV" for name in VARIANTS)
    labels = [taxonomy.display_name(name) for name in VARIANTS]  # a label for tables and figures only
    assert len(set(labels)) == len(VARIANTS) and not set(labels) & set(VARIANTS)
    config = resolve("tiny")
    assert {v for _, v in taxonomy.training_jobs(config)} == set(VARIANTS) | {"verifier"}
    for name in ("probe", "hard"):
        with pytest.raises(ValueError, match=r"choose from \('stop', 'stop_probe', 'stop_hard'\)"):
            variant_configs(config, name)
