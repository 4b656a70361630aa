"""Evaluation metrics. Scores follow the project convention: higher score = predicts label 1
(a correct path, "keep").

- ``auroc``: AUROC, pooled and within-problem, and of a bank's prefix scores (``signal_auroc``);
- ``replay``: any (N, k, L) pruning policy, and progressive schedules of several checks, replayed
  on a rollout bank with the online pipeline's exact semantics (avg@k|N, Cons@N, tokens), and grids
  of them (``replay_grid``);
- ``baselines``: the no-pruning baselines (avg@N, majority vote, pass@k);
- ``bootstrap``: bootstrap intervals over problems, plain and paired;
- ``arrays``: what they read from a bank (paths as arrays, prefix scores, the vote over kept paths).

Every public name of these modules is importable from ``stoplib.metrics``.
"""

from __future__ import annotations

from .arrays import BankArrays, bank_arrays, score_bank
from .auroc import (SignalAUROC, WithinProblemAUROC, auroc, signal_auroc, within_problem_auroc,
                    within_problem_auroc_detail)
from .baselines import NoPruningResult, bank_pass_at_k, no_pruning, pass_at_k
from .bootstrap import BootstrapCI, bootstrap_ci, paired_bootstrap_ci
from .replay import (ProgressiveResult, ReplayResult, Schedule, ScoresAt, ScoresFor, check_schedule, replay,
                     replay_grid, replay_progressive, schedule_text)

__all__ = [
    "BankArrays", "BootstrapCI", "NoPruningResult", "ProgressiveResult", "ReplayResult", "Schedule", "ScoresAt",
    "ScoresFor", "SignalAUROC", "WithinProblemAUROC", "auroc", "bank_arrays", "bank_pass_at_k", "bootstrap_ci",
    "check_schedule", "no_pruning", "paired_bootstrap_ci", "pass_at_k", "replay", "replay_grid",
    "replay_progressive", "schedule_text", "score_bank", "signal_auroc", "within_problem_auroc",
    "within_problem_auroc_detail",
]
