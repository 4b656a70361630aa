"""The taxonomy side by side (notebook 03): build every signal, score the bank, make the tables.

All comparisons are replays on one rollout bank (:mod:`stoplib.bank`), so every signal is judged
on the same prefixes; :func:`stoplib.metrics.replay` has the online pipeline's exact semantics.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .bank import Bank
from .config import RunConfig
from .metrics import bootstrap_ci, no_pruning, replay, score_bank, signal_auroc
from .signals import Signal, make_signal
from .signals.base import REGISTRY

# name in the tables -> registered signal (Type II "prm" needs a PRM checkpoint: see README)
NON_LEARNED = ("random", "slimsc_jaccard", "step_consensus", "mean_logprob", "min_logprob", "deepconf_mean",
               "deepconf_lowest_group", "deepconf_bottom10", "deepconf_tail", "mean_entropy", "self_certainty")
LEARNED = ("verifier", "stop", "stop_probe", "stop_hard")
# one representative per type for the budget curve (paper Figure 4)
REPRESENTATIVES = {"I": "slimsc_jaccard", "II": "verifier", "III": "deepconf_lowest_group", "IV": "stop"}


# how each signal is labelled in tables, figures and README (code, CLI and metrics files use the code
# name; the STOP variants of stages.VARIANTS are the signals "stop", "stop_probe" and "stop_hard")
DISPLAY_NAMES = {
    "random": "Random", "slimsc_jaccard": "Slim-SC (Jaccard)", "step_consensus": "Step consensus",
    "mean_logprob": "Mean log-prob", "min_logprob": "Min log-prob", "deepconf_mean": "DeepConf mean",
    "deepconf_lowest_group": "DeepConf lowest group", "deepconf_bottom10": "DeepConf bottom 10%",
    "deepconf_tail": "DeepConf tail", "mean_entropy": "Mean entropy", "self_certainty": "Self-certainty",
    "prm": "PRM", "verifier": "Text verifier", "stop": "STOP", "stop_probe": "STOP w/o adapter",
    "stop_hard": "STOP, hard labels",
}
NO_PRUNING = "no_pruning"


def display_name(name: str) -> str:
    """The readable name of a signal (its code name when it has none)."""
    return DISPLAY_NAMES.get(name, name)


def signal_info(name: str) -> dict[str, Any]:
    """Code name, display label, taxonomy type, signal source and learnability of a signal."""
    base = {"stop_probe": "stop", "stop_hard": "stop"}.get(name, name)
    info = REGISTRY[base][0]
    return {"signal": name, "label": display_name(name), "type": info.type, "source": info.source,
            "learnable": info.learnable}


def build_signals(config: RunConfig, tokenizer: Any, vocab_size: int, *, learned: bool = True,
                  names: Sequence[str] | None = None) -> dict[str, Signal]:
    """Every signal of the comparison, trained ones loaded from (or trained into) the store."""
    from . import stages

    wanted = list(names) if names is not None else list(NON_LEARNED) + (list(LEARNED) if learned else [])
    kwargs: dict[str, dict[str, Any]] = {
        "random": {"seed": config.seed}, "slimsc_jaccard": {"tokenizer": tokenizer},
        "step_consensus": {"tokenizer": tokenizer}, "self_certainty": {"vocab_size": vocab_size},
    }
    signals: dict[str, Signal] = {}
    for name in wanted:
        if name == "verifier":
            best, _ = stages.verifier_stage(config)
            signals[name] = make_signal("verifier", checkpoint=best, tokenizer=tokenizer)
        elif name in stages.VARIANTS:
            signals[name] = make_signal("stop", scorer=stages.load_stop(config, name))
        else:
            signals[name] = make_signal(name, **kwargs.get(name, {}))
    return signals


def score_all(bank: Bank, signals: dict[str, Signal], prefix_len: int, n: int | None = None) -> dict[str, list[np.ndarray]]:
    """Scores of every signal on the bank's prefixes at ``prefix_len`` (first ``n`` paths)."""
    return {name: score_bank(bank, signal, prefix_len, n=n) for name, signal in signals.items()}


def main_table(bank: Bank, scores: dict[str, list[np.ndarray]], *, n: int, k: int, prefix_len: int,
               n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The paper's Table 2 layout for one bank: no pruning, then each signal (avg@k|N with a 95%
    bootstrap CI over problems, Cons@N, tokens, reduction, within-problem AUROC)."""
    base = no_pruning(bank, n=n)
    per_problem = bank.correct_matrix()[:, :n].mean(1)
    ci = bootstrap_ci(per_problem, n_boot=n_boot, seed=seed)
    rows = [{"signal": NO_PRUNING, "label": f"No pruning (avg@{n})", "type": "-", "source": "-", "learnable": None,
             "accuracy": base.avg, "ci_low": ci.low, "ci_high": ci.high, "cons": base.cons,
             "tokens_k": base.total_tokens / len(bank.problems) / 1000, "reduction_pct": 0.0, "auroc_within": np.nan}]
    for name, s in scores.items():
        result = replay(bank, s, n=n, k=k, prefix_len=prefix_len)
        ci = bootstrap_ci(result.kept_accuracy, n_boot=n_boot, seed=seed)
        rows.append({**signal_info(name), "accuracy": result.avg_kept, "ci_low": ci.low, "ci_high": ci.high,
                     "cons": result.cons, "tokens_k": result.total_tokens / len(bank.problems) / 1000,
                     "reduction_pct": 100 * result.token_reduction, "auroc_within": signal_auroc(bank, s, n=n).within})
    return pd.DataFrame(rows)


def selection_bounds(bank: Bank, *, n: int, k: int, prefix_len: int) -> tuple[float, float]:
    """(worst, best) avg@k|N any signal can reach on this bank: keeping the wrong paths first, or
    the correct ones (the same replay, with correctness as the score)."""
    correct = bank.correct_matrix()[:, :n].astype(float)
    worst = replay(bank, list(-correct), n=n, k=k, prefix_len=prefix_len).avg_kept
    best = replay(bank, list(correct), n=n, k=k, prefix_len=prefix_len).avg_kept
    return worst, best


def table_metrics(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The main table as ``{signal code name: {label, accuracy, ci_low, ci_high, cons, tokens_k,
    reduction_pct, auroc_within}}`` for the metrics file; the no-pruning row has no scores, so no
    AUROC (None)."""
    out: dict[str, dict[str, Any]] = {}
    for _, row in table.iterrows():
        values: dict[str, Any] = {"label": row["label"]}
        values |= {k: float(row[k]) for k in ("accuracy", "ci_low", "ci_high", "cons",
                                                                    "tokens_k", "reduction_pct", "auroc_within")}
        if row["signal"] == NO_PRUNING:
            values["auroc_within"] = None
        out[str(row["signal"])] = values
    return out


def budget_curve(bank: Bank, signals: dict[str, Signal], *, prefix_len: int, gamma: float = 0.5,
                 ns: Sequence[int] = (2, 4, 8, 16, 32, 64),
                 scores: dict[str, list[np.ndarray]] | None = None) -> pd.DataFrame:
    """Cons@N against total tokens at retention gamma = k/N over a range of N (paper Figure 4).

    ``scores``: per-path scores already computed at ``prefix_len`` (e.g. by :func:`score_all`),
    reused for the signals they cover when they cover every N of the curve."""
    rows = []
    largest = max([n for n in ns if n <= bank.n_paths], default=0)
    known = {name: s for name, s in (scores or {}).items() if all(len(row) >= largest for row in s)}
    full = {name: known[name] if name in known else score_bank(bank, signal, prefix_len)
            for name, signal in signals.items()
            if not getattr(signal, "set_dependent", False)}  # per-path scores: score once, slice per N
    for n in [n for n in ns if n <= bank.n_paths]:
        k = max(1, int(round(gamma * n)))
        base = no_pruning(bank, n=n)
        rows.append({"signal": NO_PRUNING, "label": "No pruning", "type": "-", "n": n, "k": n,
                     "tokens_k": base.total_tokens / len(bank.problems) / 1000, "cons": base.cons, "accuracy": base.avg})
        for name, signal in signals.items():
            scores = [s[:n] for s in full[name]] if name in full else score_bank(bank, signal, prefix_len, n=n)
            result = replay(bank, scores, n=n, k=k, prefix_len=prefix_len)
            rows.append({"signal": name, "label": display_name(name), "type": signal_info(name)["type"],
                         "n": n, "k": k, "tokens_k": result.total_tokens / len(bank.problems) / 1000,
                         "cons": result.cons, "accuracy": result.avg_kept})
    return pd.DataFrame(rows)


def auroc_table(bank: Bank, scores: dict[str, list[np.ndarray]], n: int) -> pd.DataFrame:
    """Pooled and within-problem AUROC of each signal for path correctness."""
    from dataclasses import asdict

    rows = [{**signal_info(name), **asdict(signal_auroc(bank, s, n=n))} for name, s in scores.items()]
    return pd.DataFrame(rows)


def seeded(config: RunConfig, seed: int) -> RunConfig:
    """``config`` with another training (initialization) seed; labels and bank unchanged."""
    from dataclasses import replace

    return replace(config, train=replace(config.train, seed=int(seed)))


def spread_seeds(config: RunConfig) -> list[int]:
    """The initialization seeds of the seed spread: the run's own seed, then the next ones."""
    return [config.train.seed + i for i in range(config.stop_seeds)]


def training_jobs(config: RunConfig, spread_variants: Sequence[str] = ("stop", "stop_hard")) -> list[tuple[RunConfig, str]]:
    """Every training notebook 03 needs, longest first: for :func:`stoplib.stages.train_parallel`."""
    from .stages import VARIANTS

    jobs = [(config, "verifier")] + [(config, variant) for variant in VARIANTS]
    return jobs + [(seeded(config, s), v) for v in spread_variants for s in spread_seeds(config)[1:]]


def seed_spread(config: RunConfig, bank: Bank, seeds: Sequence[int], *, n: int, k: int, prefix_len: int,
                variants: Sequence[str] = ("stop",), progress: bool = False,
                scores: dict[str, list[np.ndarray]] | None = None) -> pd.DataFrame:
    """STOP variants trained from several initialization seeds on the same labels, each replayed
    on the bank; one row per (variant, seed).

    Only ``config.train.seed`` changes (the LoRA, [STOP] embedding and head initialization and
    the batch order); labels, bank and everything else stay fixed, so the spread is the
    training's own variance. Each checkpoint is cached in the store like any STOP run.
    ``scores``: bank scores already computed for the run's own seed, keyed by variant (its signal
    name, as :func:`score_all` returns them), reused instead of scoring again.
    """
    from . import stages

    rows = []
    for variant in variants:
        for seed in seeds:
            run = seeded(config, seed)
            _, summary = stages.stop_stage(run, variant, progress=progress)
            best = summary["history"][summary["best_epoch"] - 1]
            if seed == config.train.seed and scores is not None and variant in scores:
                seed_scores = scores[variant]
            else:
                seed_scores = score_bank(bank, make_signal("stop", scorer=stages.load_stop(run, variant)), prefix_len, n=n)
            result = replay(bank, seed_scores, n=n, k=k, prefix_len=prefix_len)
            rows.append({"variant": variant, "init_seed": int(seed), "best_epoch": summary["best_epoch"],
                         "val_within_auroc": best.get("val_within_auroc", np.nan), "val_mse": best["val_mse"],
                         "accuracy": result.avg_kept, "cons": result.cons,
                         "auroc_within": signal_auroc(bank, seed_scores, n=n).within})
    return pd.DataFrame(rows)
