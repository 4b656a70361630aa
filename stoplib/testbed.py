"""Notebook 00's analyses of a rollout bank: testbed properties and the "why prune early" curve.

For problems of a generated task with a step checker (the organism's chained arithmetic, the
arithmetic word problems of :mod:`stoplib.tasks.arithmetic`) every property is measured,
including where failures begin and the step-checking oracle; the organism adds its own
diagnostics (taught slips, the late sign slip). For benchmark problems only what needs no step
checker is reported (path length, pass rates, confidence AUROCs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .bank import Bank
from .metrics import auroc, within_problem_auroc
from .tasks import Task, task_of
from .toy.properties import band_limits, measure_properties, prefix_scores, summarize

# The design targets of a pruning testbed at its prefix length (the organism was built to meet them).
TARGETS: dict[str, tuple[str, float | None, float | None]] = {
    "mean_tokens": ("typical path length (tokens)", 100, None),
    "pass_at_1": ("mean pass@1", 0.25, 0.75),
    "band_fraction": ("problems in the 4..28/32 band", 0.30, None),
    "failed_first_wrong_in_prefix": ("failed paths whose first wrong step is in the prefix", 0.50, None),
    "wrong_then_correct": ("paths with a wrong step that still end correct", None, 0.10),
    "auroc.oracle.within": ("oracle 'prefix has a wrong step', within-problem AUROC", 0.75, None),
    "best_confidence_within": ("best token-confidence AUROC within problems", 0.55, 0.85),
}
# Reported beside the targets, without bounds: what limits any within-problem signal.
DIAGNOSTICS: dict[str, str] = {
    "distinct_prefixes": "distinct prefixes per problem (of its paths)",
    "prefix_fraction": "prefix length / mean path length",
}


def bank_task(bank: Bank) -> Task | None:
    """The generated task of every problem of the bank (None for benchmark problems or a mix)."""
    tasks = {(t.name if (t := task_of(bp.problem)) else None) for bp in bank.problems}
    return task_of(bank.problems[0].problem) if len(tasks) == 1 and None not in tasks else None


def has_step_checker(bank: Bank) -> bool:
    """Whether the bank's problems come from one generated task with a step checker."""
    task = bank_task(bank)
    return task is not None and task.check_path is not None


def _texts(bank: Bank, tokenizer: Any) -> list[list[str]]:
    return [[tokenizer.decode(p.token_ids, skip_special_tokens=True) for p in bp.paths] for bp in bank.problems]


def properties(bank: Bank, tokenizer: Any, prefix_len: int) -> dict[str, Any]:
    """Testbed properties of a bank at ``prefix_len`` generated tokens."""
    task = bank_task(bank)
    decode = lambda ids: tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    if task is not None and task.name == "toy":
        texts = _texts(bank, tokenizer)
        paths = [[{"text": t, "token_ids": p.token_ids, "logprobs": p.logprobs} for t, p in zip(ts, bp.paths)]
                 for ts, bp in zip(texts, bank.problems)]
        props = measure_properties([bp.problem for bp in bank.problems], paths, prefix_len, decode=decode)
    elif task is not None and task.check_path is not None:
        props = summarize(_checked_records(bank, task, prefix_len, decode))
    else:
        props = _generic_properties(bank, prefix_len)
    confidence = [v["within"] for k, v in props["auroc"].items() if k in ("mean_logprob", "min_logprob", "group_conf")]
    props["best_confidence_within"] = float(np.nanmax(confidence)) if confidence else float("nan")
    props["distinct_prefixes"] = distinct_prefixes(bank, prefix_len)
    props["prefix_fraction"] = prefix_len / props["mean_tokens"] if props.get("mean_tokens") else float("nan")
    return props


def distinct_prefixes(bank: Bank, prefix_len: int) -> float:
    """Mean number of distinct ``prefix_len``-token prefixes among a problem's paths.

    Paths with the same prefix get the same score from any prefix signal, so when a problem has
    one or two distinct prefixes, no signal can rank its paths much better than chance.
    """
    n = bank.n_paths
    return float(np.mean([len({tuple(p.token_ids[:prefix_len]) for p in bp.paths[:n]}) for bp in bank.problems]))


def _checked_records(bank: Bank, task: Task, prefix_len: int, decode: Any) -> list[dict[str, Any]]:
    """One record per path (the fields :func:`stoplib.toy.properties.summarize` reads)."""
    n = bank.n_paths
    records = []
    for bp in bank.problems:
        for path in bp.paths[:n]:
            text = decode(path.token_ids)
            prefix_text = decode(path.token_ids[:prefix_len])
            check = task.check_path(bp.problem, text)
            err = check.first_error_char
            rec = {"problem": bp.problem.id, "difficulty": task.difficulty(bp.problem) if task.difficulty else 0.0,
                   "correct": check.final_correct, "n_tokens": path.generated_tokens, "n_chars": len(text),
                   "has_wrong_step": check.has_wrong_step, "wrong_then_correct": check.wrong_then_correct,
                   "first_wrong_step": check.first_wrong_step, "first_error_kind": check.first_error_kind,
                   "first_wrong_in_prefix": check.first_wrong_char is not None
                   and check.first_wrong_char < len(prefix_text),
                   "prefix_has_error": err is not None and err < len(prefix_text),
                   "n_wrong_steps": check.n_wrong_steps}
            rec.update(prefix_scores(path.logprobs[:prefix_len]))
            rec["oracle"] = 0.0 if rec["prefix_has_error"] else 1.0
            rec["question_only"] = -rec["difficulty"]
            records.append(rec)
    return records


def _generic_properties(bank: Bank, prefix_len: int) -> dict[str, Any]:
    correct = bank.correct_matrix()
    n = correct.shape[1]
    lo, hi = band_limits(n)
    groups = [bp.problem.id for bp in bank.problems for _ in bp.paths[:n]]
    flat = correct.reshape(-1)
    out: dict[str, Any] = {
        "n_problems": correct.shape[0], "n_paths": int(flat.size),
        "mean_tokens": float(bank.lengths().mean()), "pass_at_1": float(correct.mean(1).mean()),
        "band_fraction": float(np.mean([(lo <= c <= hi) for c in correct.sum(1)])), "auroc": {},
    }
    stats = {
        "mean_logprob": [float(np.mean(p.logprobs[:prefix_len])) for bp in bank.problems for p in bp.paths[:n]],
        "min_logprob": [float(np.min(p.logprobs[:prefix_len])) for bp in bank.problems for p in bp.paths[:n]],
    }
    for name, scores in stats.items():
        out["auroc"][name] = {"pooled": auroc(scores, flat), "within": within_problem_auroc(scores, flat, groups)}
    return out


def _get(props: dict[str, Any], dotted: str) -> float:
    value: Any = props
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return float("nan")
        value = value[part]
    return float(value)


def property_table(props: dict[str, Any]) -> pd.DataFrame:
    """The measured properties beside their required bounds."""
    rows = []
    for key, (label, low, high) in TARGETS.items():
        value = _get(props, key)
        bound = " and ".join(s for s in (f">= {low}" if low is not None else "", f"<= {high}" if high is not None else "") if s)
        met = not np.isnan(value) and (low is None or value >= low) and (high is None or value <= high)
        rows.append({"property": label, "value": round(value, 3), "required": bound, "met": bool(met)})
    for key, label in DIAGNOSTICS.items():
        if key in props:
            rows.append({"property": label, "value": round(float(props[key]), 3), "required": "", "met": None})
    for name, v in props.get("auroc", {}).items():
        rows.append({"property": f"AUROC {name} (pooled / within)",
                     "value": f"{v['pooled']:.3f} / {v['within']:.3f}", "required": "", "met": None})
    return pd.DataFrame(rows)


def flat_metrics(props: dict[str, Any]) -> dict[str, float]:
    """Numbers of a properties dict as a flat {name: float} (for the metrics JSON)."""
    out = {k: float(v) for k, v in props.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for name, v in props.get("auroc", {}).items():
        out[f"auroc_{name}_pooled"] = float(v["pooled"])
        out[f"auroc_{name}_within"] = float(v["within"])
    return out


def salvage_curve(bank: Bank, tokenizer: Any, n_points: int = 41) -> dict[str, np.ndarray]:
    """First-error positions of failed paths and the "why prune early" curve (needs a step checker).

    ``doomed_share[t]``: share of failed paths whose first error lies at or before fraction t
    of the path; ``still_salvageable[t]``: P(correct | an error at or before t).
    """
    task = bank_task(bank)
    if task is None or task.check_path is None:
        raise ValueError("the salvage curve needs a step checker: only generated tasks (stoplib.tasks) have one")
    first, final = [], []
    for bp, texts in zip(bank.problems, _texts(bank, tokenizer)):
        for text in texts:
            check = task.check_path(bp.problem, text)
            err = check.first_error_char
            first.append(np.inf if err is None else err / max(1, len(text)))
            final.append(check.final_correct)
    first, final = np.array(first), np.array(final, dtype=bool)
    positions = np.linspace(0, 1, n_points)
    failed = first[~final]
    doomed = np.array([np.mean(failed <= t) if failed.size else np.nan for t in positions])
    salvage = np.array([final[first <= t].mean() if (first <= t).any() else np.nan for t in positions])
    return {"positions": positions, "doomed_share": doomed, "still_salvageable": salvage,
            "first_error_fractions": failed[np.isfinite(failed)]}


def build_summary(model_path: str | Path) -> dict[str, Any]:
    """How a model directory was built (the organism's ``build_info.json``, a converted GGUF's
    ``conversion.json``) and its architecture in a few numbers."""
    model_path = Path(model_path)
    summary: dict[str, Any] = {}
    info_path = model_path / "build_info.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        keep = ("seed", "steps", "final_loss", "wall_time_s", "n_parameters", "parameters")
        summary.update({k: info[k] for k in keep if k in info})
        summary.update({k: v for k, v in info.get("config", {}).items() if k in ("hidden_size", "num_layers", "steps", "lr")})
        return summary
    if (model_path / "conversion.json").exists():
        summary.update(json.loads((model_path / "conversion.json").read_text()))
    config_path = model_path / "config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text())
        keys = ("architectures", "num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads",
                "vocab_size", "max_position_embeddings")
        summary.update({k: config[k] for k in keys if k in config})
    return summary or {"model": str(model_path)}
