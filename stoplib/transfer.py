"""Out-of-domain transfer (paper Table 8, notebook 07): STOP trained on one task family, applied
without retraining to another.

The STOP module is the run's own (labels of ``train_problems``); only the evaluated problems
change, to the preset's ``transfer_problems`` (e.g. the long organism's multiple-choice family,
ZebraLogic for the paper's models). The comparison on each bank: no pruning, STOP, and the
non-learned signal that is best *in domain* (chosen on the in-domain bank, so the transfer bank
never picks its own baseline), each with a 95% bootstrap CI over problems, and STOP's paired
differences from both.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .bank import Bank
from .config import RunConfig
from .jsonable import table_records as records  # noqa: F401  (notebook 07 calls transfer.records)
from .metrics import bootstrap_ci, paired_bootstrap_ci, replay, score_bank, signal_auroc
from .presets import get_preset
from .signals import Signal
from .taxonomy import display_name


def transfer_problems(config: RunConfig, override: str = "") -> str | None:
    """The task family to transfer to: ``override`` if given, else the model preset's (None if
    it has none)."""
    return override or get_preset(config.model).transfer_problems


def transfer_config(config: RunConfig, problems: str) -> RunConfig:
    """``config`` evaluated on ``problems``: same model, labels and STOP checkpoint, other bank."""
    if not problems:
        raise ValueError("transfer_config needs the problems to transfer to (a generated task, benchmark or file)")
    if problems == config.benchmark:
        raise ValueError(f"transfer problems {problems!r} are the run's own evaluation problems: nothing is transferred")
    return replace(config, benchmark=problems)


def best_in_domain(bank: Bank, signals: dict[str, Signal], *, n: int, k: int, prefix_len: int,
                   exclude: Sequence[str] = ("random",)) -> str:
    """The signal with the highest avg@k|N on ``bank`` (ties: the first), among ``signals``
    less ``exclude``."""
    candidates = [name for name in signals if name not in exclude]
    if not candidates:
        raise ValueError(f"no candidate signals among {sorted(signals)} once {list(exclude)} are left out")
    scores = {name: replay(bank, score_bank(bank, signals[name], prefix_len, n=n), n=n, k=k,
                           prefix_len=prefix_len).avg_kept for name in candidates}
    return max(candidates, key=lambda name: scores[name])


def comparison(banks: dict[str, Bank], signals: dict[str, Signal], *, n: int, k: int, prefix_len: int,
               n_boot: int = 2000, seed: int = 0, reference: str = "stop") -> pd.DataFrame:
    """One row per (bank, method): no pruning (avg@n), then each signal's avg@k|N, with a 95%
    bootstrap CI over problems, the within-problem AUROC, the token reduction, and the paired
    difference of ``reference`` (STOP) minus the row (CI and p-value)."""
    if reference not in signals:
        raise ValueError(f"reference signal {reference!r} is not among {sorted(signals)}")
    rows = []
    for bank_name, bank in banks.items():
        kept: dict[str, np.ndarray] = {"no_pruning": bank.correct_matrix()[:, :n].mean(1)}
        info: dict[str, dict[str, Any]] = {"no_pruning": {"auroc_within": np.nan, "reduction_pct": 0.0}}
        for name, signal in signals.items():
            scores = score_bank(bank, signal, prefix_len, n=n)
            result = replay(bank, scores, n=n, k=k, prefix_len=prefix_len)
            kept[name] = result.kept_accuracy
            info[name] = {"auroc_within": signal_auroc(bank, scores, n=n).within,
                          "reduction_pct": 100 * result.token_reduction}
        for name, values in kept.items():
            ci = bootstrap_ci(values, n_boot=n_boot, seed=seed)
            row = {"bank": bank_name, "signal": name,
                   "label": f"No pruning (avg@{n})" if name == "no_pruning" else display_name(name),
                   "accuracy": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, **info[name]}
            if name != reference:
                d = paired_bootstrap_ci(kept[reference], values, n_boot=n_boot, seed=seed)
                row |= {"stop_minus": d.estimate, "stop_minus_low": d.low, "stop_minus_high": d.high,
                        "stop_minus_p": d.p_value}
            rows.append(row)
    return pd.DataFrame(rows)
