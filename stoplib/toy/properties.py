"""Engine-agnostic measurement of the organism's testbed properties from already sampled paths.

Input: problems and, per problem, a list of paths. A path is any object or mapping with ``text``
(the generated completion, special tokens removed), ``token_ids`` (generated tokens, eos
included if generated) and ``logprobs`` (log-probability of each generated token under the
model's raw T=1 distribution), optionally ``prefix_len`` (generated tokens; the ``prefix_len``
argument overrides it).

Signals scored on the prefix of each path (higher = predicts a correct path):

* ``oracle``: 1 if the prefix text contains no error (``check_path(...).first_error_char`` lies
  at or beyond the prefix), else 0 -- what a perfect step checker could know at the prefix;
* ``mean_logprob`` / ``min_logprob``: mean / minimum chosen-token log-probability of the prefix;
* ``group_conf``: DeepConf-style lowest group confidence: the minimum over sliding windows of
  ``window`` tokens of the window's mean token confidence. DeepConf's token confidence is the
  negative mean log-probability of the top-k candidates; with only the chosen token's
  log-probability available we use it as the token confidence (an approximation: it reads the
  sampled token, not the shape of the distribution);
* ``question_only``: minus the problem's difficulty knob ``b`` -- a baseline that knows the
  question but not the path. Within a problem it is constant, so its within-problem AUROC is
  0.5 by construction; only its pooled AUROC is meaningful.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from stoplib.metrics import auroc, within_problem_auroc_detail
from stoplib.problems import Problem
from stoplib.toy.task import DEFAULT_SPEC, ToyTaskSpec, check_path, difficulty

SIGNALS = ("oracle", "mean_logprob", "min_logprob", "group_conf", "question_only")


def _field(path: Any, name: str, default: Any = None) -> Any:
    if isinstance(path, Mapping):
        return path.get(name, default)
    return getattr(path, name, default)


def lowest_group_confidence(logprobs: Sequence[float], window: int) -> float:
    """Minimum over windows of ``window`` consecutive tokens of the mean log-probability
    (the mean of all tokens when there are fewer than ``window``)."""
    lp = np.asarray(logprobs, dtype=float)
    if lp.size == 0:
        return 0.0
    if lp.size <= window:
        return float(lp.mean())
    csum = np.concatenate([[0.0], np.cumsum(lp)])
    means = (csum[window:] - csum[:-window]) / window
    return float(means.min())


def prefix_scores(logprobs: Sequence[float], window: int = 8) -> dict[str, float]:
    """Token-confidence statistics of one prefix (empty prefix: all 0)."""
    lp = np.asarray(logprobs, dtype=float)
    if lp.size == 0:
        return {"mean_logprob": 0.0, "min_logprob": 0.0, "group_conf": 0.0}
    return {
        "mean_logprob": float(lp.mean()),
        "min_logprob": float(lp.min()),
        "group_conf": lowest_group_confidence(lp, window),
    }


def band_limits(n: int, low: int = 4, high: int = 28, of: int = 32) -> tuple[float, float]:
    """The learnable band ``low..high`` correct of ``of`` samples, scaled to ``n`` samples."""
    return low * n / of, high * n / of


def path_records(
    problems: Sequence[Problem],
    paths: Sequence[Sequence[Any]],
    prefix_len: int | None = None,
    *,
    spec: ToyTaskSpec = DEFAULT_SPEC,
    window: int = 8,
    decode: Callable[[Sequence[int]], str] | None = None,
) -> list[dict[str, Any]]:
    """One flat record per path: correctness, step check, prefix statistics and scores.

    ``decode`` maps prefix token ids to text; without it the tokenizer is assumed to be
    character level (the organism's): the prefix text is ``text[:prefix_len]``.
    """
    if len(problems) != len(paths):
        raise ValueError(f"{len(problems)} problems but {len(paths)} lists of paths")
    records = []
    for problem, plist in zip(problems, paths):
        for j, path in enumerate(plist):
            text = _field(path, "text")
            token_ids = list(_field(path, "token_ids"))
            logprobs = list(_field(path, "logprobs"))
            if text is None:
                raise ValueError(f"problem {problem.id} path {j}: field 'text' is missing")
            if len(logprobs) != len(token_ids):
                raise ValueError(
                    f"problem {problem.id} path {j}: {len(logprobs)} logprobs for "
                    f"{len(token_ids)} tokens"
                )
            L = prefix_len if prefix_len is not None else _field(path, "prefix_len")
            if L is None:
                raise ValueError(f"problem {problem.id} path {j}: no prefix_len given")
            prefix_text = decode(token_ids[:L]) if decode is not None else text[:L]
            check = check_path(problem, text, spec)
            err = check.first_error_char
            rec = {
                "problem": problem.id,
                "difficulty": difficulty(problem),
                "correct": check.final_correct,
                "n_tokens": len(token_ids),
                "n_chars": len(text),
                "has_wrong_step": check.has_wrong_step,
                "wrong_then_correct": check.wrong_then_correct,
                "first_wrong_step": check.first_wrong_step,
                "first_wrong_in_prefix": (
                    check.first_wrong_char is not None and check.first_wrong_char < len(prefix_text)
                ),
                "prefix_has_error": err is not None and err < len(prefix_text),
                "first_error_kind": check.first_error_kind,
                "wrong_hard_steps": check.wrong_hard_steps,
                "taught_slips": check.taught_slips,
                "n_wrong_steps": check.n_wrong_steps,
                "operand_typos": check.operand_typos,
                "late_slip": check.late_slip,
            }
            rec.update(prefix_scores(logprobs[:L], window))
            rec["oracle"] = 0.0 if rec["prefix_has_error"] else 1.0
            rec["question_only"] = -rec["difficulty"]
            records.append(rec)
    return records


def _cause(rec: Mapping[str, Any]) -> str:
    """Coarse cause of an error path, for the correction diagnosis (by error kind for tasks other
    than the organism's)."""
    if "wrong_hard_steps" not in rec:
        return f"{rec['first_error_kind']} error"
    if rec["wrong_hard_steps"] >= 2:
        return "two or more wrong hard steps"
    if rec["first_error_kind"] in ("format", "answer"):
        return f"{rec['first_error_kind']} error"
    if rec["wrong_hard_steps"] == 1 and rec["n_wrong_steps"] == 1:
        return "one wrong hard step only"
    if rec["wrong_hard_steps"] == 1:
        return "one wrong hard step + later errors"
    if rec.get("late_slip") and rec["n_wrong_steps"] == 1:
        return "late sign slip only"
    return "easy-step errors only"


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The property dict (see :func:`measure_properties`) from :func:`path_records` output."""
    if not records:
        raise ValueError("no paths")
    correct = np.array([r["correct"] for r in records], dtype=bool)
    groups = [r["problem"] for r in records]
    per_problem: dict[str, list[bool]] = {}
    for r in records:
        per_problem.setdefault(r["problem"], []).append(r["correct"])
    band = []
    for outcomes in per_problem.values():
        lo, hi = band_limits(len(outcomes))
        band.append(lo <= sum(outcomes) <= hi)
    failed = [r for r in records if not r["correct"]]
    wrong = [r for r in records if r["has_wrong_step"]]
    wtc = [r for r in wrong if r["correct"]]
    out: dict[str, Any] = {
        "n_problems": len(per_problem),
        "n_paths": len(records),
        "mean_tokens": float(np.mean([r["n_tokens"] for r in records])),
        "mean_chars": float(np.mean([r["n_chars"] for r in records])),
        "pass_at_1": float(np.mean([np.mean(v) for v in per_problem.values()])),
        "band_fraction": float(np.mean(band)),
        "failed_first_wrong_in_prefix": (
            float(np.mean([r["first_wrong_in_prefix"] for r in failed])) if failed else float("nan")
        ),
        "wrong_step_rate": len(wrong) / len(records),
        "wrong_then_correct": len(wtc) / len(wrong) if wrong else float("nan"),
        "wrong_then_correct_causes": dict(Counter(_cause(r) for r in wtc)),
        "error_path_causes": dict(Counter(_cause(r) for r in wrong)),
        "failed_first_wrong_step": dict(
            sorted(Counter(r["first_wrong_step"] for r in failed if r["first_wrong_step"] is not None).items())
        ),
        "auroc": {},
    }
    if "taught_slips" in records[0]:  # the organism's own diagnostics
        out["failed_taught_slip_first"] = (
            float(np.mean([r["taught_slips"] > 0 for r in failed])) if failed else float("nan"))
        out["operand_typo_rate"] = float(np.mean([r["operand_typos"] > 0 for r in records]))
        out["late_slip_rate"] = float(np.mean([bool(r.get("late_slip")) for r in records]))
    for name in SIGNALS:
        scores = [r[name] for r in records]
        within = within_problem_auroc_detail(scores, correct, groups)
        out["auroc"][name] = {
            "pooled": auroc(scores, correct),
            "within": within.value,
            "n_groups": within.n_groups,
        }
    return out


def measure_properties(
    problems: Sequence[Problem],
    paths: Sequence[Sequence[Any]],
    prefix_len: int | None = None,
    *,
    spec: ToyTaskSpec = DEFAULT_SPEC,
    window: int = 8,
    decode: Callable[[Sequence[int]], str] | None = None,
) -> dict[str, Any]:
    """Measure the testbed properties of sampled paths.

    Returns a dict with: ``n_problems``, ``n_paths``; ``mean_tokens``, ``mean_chars`` (path
    length); ``pass_at_1`` (mean over problems of the fraction of correct paths);
    ``band_fraction`` (problems with 4..28 of 32 correct, scaled to the sample count);
    ``failed_first_wrong_in_prefix`` (failed paths whose first wrong step starts inside the
    prefix); ``wrong_step_rate`` (paths with a wrong step); ``wrong_then_correct`` (paths with a
    wrong step that still end correct, over paths with a wrong step) and its causes;
    ``auroc[signal] = {"pooled", "within", "n_groups"}`` for final correctness, for the signals
    ``oracle``, ``mean_logprob``, ``min_logprob``, ``group_conf``, ``question_only`` (see the
    module docstring).
    """
    records = path_records(problems, paths, prefix_len, spec=spec, window=window, decode=decode)
    return summarize(records)
