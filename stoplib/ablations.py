"""STOP's ablations (paper Tables 5 and 6, notebook 06): one setting changed at a time.

An *axis* is one STOP or training setting: the number of [STOP] tokens ``num_tokens`` (M,
Table 5), the LoRA rank ``lora_r`` (Table 6;
``lora_alpha`` keeps the run's ratio alpha / r, so LoRA's scale stays the same),
the learning rate ``lr``, the [STOP] embedding's starting point ``embedding_init`` and the share
of the training problems whose labels STOP trains on, ``label_fraction``. Every value of an axis is trained from the same initialization seeds
on the same labels, scored on the same bank and replayed with the same N, k and L, so the rows of
an axis differ only in that setting. The run's own value of each axis is the STOP run of notebooks
02/03 (same store key), trained once and shared by every axis.

Intervals: per problem, the kept accuracy (and the within-problem AUROC) is averaged over the
seeds, then problems are resampled (:func:`stoplib.metrics.bootstrap_ci`); the spread over seeds
is reported beside it as a standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .bank import Bank
from .config import RunConfig
from .jsonable import table_records as records  # noqa: F401  (notebook 06 calls ablations.records)
from .metrics import auroc, bank_arrays, bootstrap_ci, paired_bootstrap_ci, replay, score_bank
from .signals import make_signal
from .stage_configs import EMBEDDING_INITS

#: The settings an ablation can vary, with the name tables and figures give them.
AXES = {"num_tokens": "[STOP] tokens M", "lora_r": "LoRA rank r", "lr": "learning rate",
        "embedding_init": "[STOP] embedding init", "label_fraction": "share of labelled problems"}
#: The paper's Table 5 values of M.
PAPER_STOP_TOKENS = (1, 2, 4, 6, 8)


@dataclass(frozen=True)
class Setting:
    """One trained STOP module of an ablation: ``axis`` set to ``value``, from ``seed``."""

    axis: str
    value: Any  # a number, or a name (embedding_init)
    seed: int
    config: RunConfig
    is_default: bool  # the run's own value (the STOP run of notebooks 02/03)


def default_grid(config: RunConfig) -> dict[str, tuple[float, ...]]:
    """The values each axis takes by default: the paper's M (Table 5; at ``tiny`` scale only 1 and
    the run's M), ranks r/4, r, 4r around the run's rank, and the learning rate is left out (add it
    with ``{"lr": ...}``)."""
    m, r = config.stop.num_tokens, config.stop.lora_r
    if config.scale == "tiny":
        return {"num_tokens": tuple(sorted({1, m})), "lora_r": tuple(sorted({max(1, r // 4), r}))}
    return {"num_tokens": tuple(sorted(set(PAPER_STOP_TOKENS) | {m})),
            "lora_r": tuple(sorted({max(1, r // 4), r, 4 * r}))}


def more_axes(config: RunConfig) -> dict[str, tuple[Any, ...]]:
    """Values of the axes :func:`default_grid` leaves out (the suspects of a STOP-vs-verifier gap
    besides M and r): the learning rate ×1/3 and ×3, each [STOP] embedding start, and 1/4 and 1/2
    of the labelled problems, each with the run's own value."""
    lr = config.train.lr
    return {"lr": (lr / 3, lr, 3 * lr), "embedding_init": tuple(EMBEDDING_INITS),
            "label_fraction": tuple(sorted({0.25, 0.5, config.train.label_fraction}))}


def default_value(config: RunConfig, axis: str) -> Any:
    """The run's own value of ``axis``."""
    _check_axis(axis)
    if axis in ("lr", "label_fraction"):
        return getattr(config.train, axis)
    return getattr(config.stop, axis)


def ablated(config: RunConfig, axis: str, value: float, seed: int) -> RunConfig:
    """``config`` with ``axis`` set to ``value`` and the training (initialization) seed ``seed``."""
    _check_axis(axis)
    stop, train = config.stop, replace(config.train, seed=int(seed))
    if axis == "num_tokens":
        stop = replace(stop, num_tokens=_positive_int(axis, value))
    elif axis == "lora_r":
        r = _positive_int(axis, value)  # alpha / r (LoRA's scale) stays the run's
        alpha = stop.lora_alpha * r / stop.lora_r
        stop = replace(stop, lora_r=r, lora_alpha=int(alpha) if float(alpha).is_integer() else alpha)
    elif axis == "embedding_init":
        if value not in EMBEDDING_INITS:
            raise ValueError(f"ablation value embedding_init={value!r}: expected one of {list(EMBEDDING_INITS)}")
        stop = replace(stop, embedding_init=value)
    elif axis == "label_fraction":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
            raise ValueError(f"ablation value label_fraction={value!r}: expected a share in (0, 1]")
        train = replace(train, label_fraction=float(value))
    else:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < 1:
            raise ValueError(f"ablation value lr={value!r}: expected a learning rate in (0, 1)")
        train = replace(train, lr=float(value))
    return replace(config, stop=stop, train=train)


def settings(config: RunConfig, grid: Mapping[str, Sequence[float]], seeds: Sequence[int]) -> list[Setting]:
    """Every (axis, value, seed) of ``grid``, in order."""
    if not grid:
        raise ValueError("the ablation grid is empty: give at least one axis and its values")
    if not seeds:
        raise ValueError("an ablation needs at least one seed")
    out = []
    for axis, values in grid.items():
        _check_axis(axis)
        if not values:
            raise ValueError(f"ablation axis {axis!r} has no values")
        if len(set(values)) != len(values):
            raise ValueError(f"ablation axis {axis!r} repeats a value: {list(values)}")
        default = default_value(config, axis)
        for value in values:
            for seed in seeds:
                out.append(Setting(axis, value, int(seed), ablated(config, axis, value, seed), value == default))
    return out


def training_jobs(grid_settings: Sequence[Setting]) -> list[tuple[RunConfig, str]]:
    """The STOP trainings of the settings, once each (the default value is shared by the axes),
    for :func:`stoplib.stages.train_parallel`."""
    jobs: dict[str, tuple[RunConfig, str]] = {}
    for s in grid_settings:
        jobs.setdefault(_key(s), (s.config, "stop"))
    return list(jobs.values())


def per_problem_auroc(bank: Bank, scores: Sequence[np.ndarray], *, n: int) -> np.ndarray:
    """Within-problem AUROC of each problem's first ``n`` paths (NaN where a problem's paths are
    all right or all wrong, or unscored)."""
    arrays = bank_arrays(bank)
    out = np.full(len(arrays.problem_ids), np.nan)
    for p, s in enumerate(scores):
        s = np.asarray(s, dtype=float)[:n]
        ok = ~np.isnan(s)
        out[p] = auroc(s[ok], arrays.correct[p, :n][ok]) if ok.any() else np.nan
    return out


@dataclass
class AblationScores:
    """What scoring the settings gives: one row per setting, and per-problem arrays for intervals."""

    runs: pd.DataFrame  # axis, value, seed, is_default, params, best_epoch, val_within_auroc, accuracy, cons, auroc_within
    kept_accuracy: dict[tuple[str, float, int], np.ndarray]  # (axis, value, seed) -> (P,)
    problem_auroc: dict[tuple[str, float, int], np.ndarray]


def score_settings(bank: Bank, grid_settings: Sequence[Setting], *, n: int, k: int, prefix_len: int,
                   progress: bool = False) -> AblationScores:
    """Load each setting's trained STOP module (training it first if the store lacks it), score
    the bank's prefixes at ``prefix_len`` and replay N = ``n`` -> k = ``k``."""
    from . import stages

    rows, kept, per_problem, cache = [], {}, {}, {}
    iterator: Any = grid_settings
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(grid_settings, desc="scoring ablations")
    for s in iterator:
        key = _key(s)
        if key not in cache:  # the default value is one checkpoint, shared by the axes
            scorer = stages.load_stop(s.config, "stop")
            _, summary = stages.stop_stage(s.config, "stop", progress=False)
            scores = score_bank(bank, make_signal("stop", scorer=scorer), prefix_len, n=n)
            params = sum(p.numel() for p in scorer.trainable_parameters())
            cache[key] = (scores, summary, params)
        scores, summary, params = cache[key]
        result = replay(bank, scores, n=n, k=k, prefix_len=prefix_len)
        problem_auroc = per_problem_auroc(bank, scores, n=n)
        best = summary["history"][summary["best_epoch"] - 1]
        rows.append({"axis": s.axis, "value": s.value, "seed": s.seed, "is_default": s.is_default,
                     "params": int(params), "best_epoch": summary["best_epoch"],
                     "val_within_auroc": best.get("val_within_auroc", np.nan), "accuracy": result.avg_kept,
                     "cons": result.cons, "auroc_within": float(np.nanmean(problem_auroc))})
        kept[(s.axis, s.value, s.seed)] = result.kept_accuracy
        per_problem[(s.axis, s.value, s.seed)] = problem_auroc
    return AblationScores(pd.DataFrame(rows), kept, per_problem)


def summary_table(scored: AblationScores, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (axis, value): the seed mean of avg@k|N and of the within-problem AUROC, each
    with a 95% bootstrap CI over problems (of the per-problem seed means), and the seed std."""
    rows = []
    runs = scored.runs
    for (axis, value), group in runs.groupby(["axis", "value"], sort=False):
        seeds = list(group["seed"])
        acc = np.mean([scored.kept_accuracy[(axis, value, s)] for s in seeds], axis=0)
        roc = np.stack([scored.problem_auroc[(axis, value, s)] for s in seeds])
        counts = np.isfinite(roc).sum(0)
        roc_ok = np.nansum(roc, 0)[counts > 0] / counts[counts > 0]  # problems with both classes
        acc_ci = bootstrap_ci(acc, n_boot=n_boot, seed=seed)
        roc_ci = bootstrap_ci(roc_ok, n_boot=n_boot, seed=seed) if roc_ok.size else None
        rows.append({"axis": axis, "label": AXES[axis], "value": value, "is_default": bool(group["is_default"].iloc[0]),
                     "seeds": len(seeds), "params": int(group["params"].iloc[0]),
                     "accuracy": acc_ci.estimate, "ci_low": acc_ci.low, "ci_high": acc_ci.high,
                     "accuracy_seed_std": float(group["accuracy"].std(ddof=1)) if len(seeds) > 1 else np.nan,
                     "auroc_within": roc_ci.estimate if roc_ci else np.nan,
                     "auroc_ci_low": roc_ci.low if roc_ci else np.nan,
                     "auroc_ci_high": roc_ci.high if roc_ci else np.nan,
                     "val_within_auroc": float(group["val_within_auroc"].mean()),
                     "best_epoch": float(group["best_epoch"].mean())})
    return pd.DataFrame(rows)


def seed_mean_kept(scored: AblationScores, axis: str, value: float) -> np.ndarray:
    """Per problem, the kept accuracy of one setting averaged over its seeds."""
    keys = [key for key in scored.kept_accuracy if key[0] == axis and key[1] == value]
    if not keys:
        raise ValueError(f"no scored setting {axis}={value!r}; scored: "
                         f"{sorted({(a, v) for a, v, _ in scored.kept_accuracy})}")
    return np.mean([scored.kept_accuracy[key] for key in keys], axis=0)


def compare_with(scored: AblationScores, reference: np.ndarray, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Each setting's seed-mean kept accuracy minus ``reference`` (per problem, e.g. the text
    verifier's), with a paired bootstrap CI over problems and its p-value."""
    rows = []
    for axis, value in dict.fromkeys((a, v) for a, v, _ in scored.kept_accuracy):
        d = paired_bootstrap_ci(seed_mean_kept(scored, axis, value), reference, n_boot=n_boot, seed=seed)
        rows.append({"axis": axis, "value": value, "difference": d.estimate, "ci_low": d.low, "ci_high": d.high,
                     "p_value": d.p_value})
    return pd.DataFrame(rows)


def _key(s: Setting) -> str:
    """What identifies a setting's checkpoint besides the shared labels: its STOP and training configs."""
    from .store import config_hash

    return config_hash({"stop": s.config.stop, "train": s.config.train})


def _check_axis(axis: str) -> None:
    if axis not in AXES:
        raise ValueError(f"unknown ablation axis {axis!r}; choose from {sorted(AXES)}")


def _positive_int(axis: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"ablation value {axis}={value!r}: expected a positive integer")
    return int(value)
