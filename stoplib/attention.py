"""Where do the [STOP] tokens look? Attention of STOP's Check over the prompt and prefix (paper §5.3, Fig. 7).

``stop_attention`` runs the two-stage forward with eager attention and returns the attention
weights of the M [STOP] query positions over every key position (prompt + prefix + [STOP]s),
per layer and head: an array (layers, heads, M, S + M) whose rows sum to one. ``aggregate``
reduces it to one distribution over key positions (last [STOP] token or all of them; mean over
heads; all layers or the top ones). Token categories summarize where the mass goes: for the
organism numbers, operators, step separators and the answer; for text models discourse markers
("Wait", "Therefore", blank lines), negations and answer options A-D.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from .metrics import bootstrap_ci, paired_bootstrap_ci
from .prefix_scorer import decoder_body, left_pad
from .stop import StopScorer


@contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Temporarily switch a transformers model to eager attention (which can return weights)."""
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(previous)


@torch.no_grad()
def stop_attention(scorer: StopScorer, sequence: Sequence[int]) -> tuple[np.ndarray, float]:
    """Attention (layers, heads, M, S + M) of the [STOP] positions for one prompt+prefix, and the score."""
    base = scorer.base_model
    ids, mask = left_pad([list(sequence)], scorer.pad_id, scorer.device)
    m = scorer.config.num_tokens
    with eager_attention(base):
        cache = scorer.encode_prefix(ids, mask)
        embeds = scorer.stop_embedding.to(scorer.head.weight.dtype).expand(1, m, -1)
        positions = mask.sum(-1, keepdim=True) + torch.arange(m, device=mask.device)
        with scorer.adapter_on():
            out = decoder_body(scorer.model)(
                inputs_embeds=embeds, attention_mask=torch.cat([mask, torch.ones((1, m), dtype=mask.dtype)], 1),
                position_ids=positions, past_key_values=cache, use_cache=True, output_attentions=True,
            )
    score = float(torch.sigmoid(scorer.head(out.last_hidden_state[:, -1, :])).squeeze())
    att = torch.stack([a[0] for a in out.attentions]).float().cpu().numpy()  # (layers, heads, M, S + M)
    return att, score


def aggregate(att: np.ndarray, *, query: str = "last", layers: str | int = "all") -> np.ndarray:
    """One distribution over key positions: ``query`` "last" (last [STOP]) or "all" (mean over the
    M [STOP] tokens); mean over heads; ``layers`` "all" or an int n (the top n layers)."""
    if query not in ("last", "all"):
        raise ValueError(f"query must be 'last' or 'all', got {query!r}")
    chosen = att if layers == "all" else att[-int(layers):]
    rows = chosen[:, :, -1, :] if query == "last" else chosen.mean(axis=2)
    vec = rows.mean(axis=(0, 1))
    return vec / vec.sum()


# ---------------------------------------------------------------- token categories
_NEGATION = re.compile(r"^(not|no|never|don't|doesn't|isn't|can't|cannot|won't|didn't|wasn't)$", re.I)
_MARKERS = ("wait", "therefore", "so", "but", "hmm", "however", "thus", "alternatively")


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """The text of each token (decoded one by one)."""
    return [tokenizer.decode([int(t)]) for t in ids]


def categorize_steps(tokens: Sequence[str], prompt_len: int) -> list[str]:
    """Category of each position of a step-by-step arithmetic sequence (the organism's chained
    arithmetic, or the arithmetic word problems): prompt, digit, operator, step label /
    separator, the answer line, other."""
    labels, in_answer = [], False
    text_so_far = ""
    for i, tok in enumerate(tokens):
        text_so_far += tok
        word = tok.strip()
        if i < prompt_len:
            labels.append("prompt")
        elif in_answer or text_so_far.endswith("\\boxed{") or word == "\\" or word.lower() == "answer":
            in_answer = True
            labels.append("answer")
        elif word.isdigit():
            labels.append("digit")
        elif word in ("*", "+", "-", "="):
            labels.append("operator")
        elif word in ("", ":") or (len(word) == 1 and word.isalpha()):
            labels.append("step label / separator")
        else:
            labels.append("other")
    return labels


def categorize_text(tokens: Sequence[str], prompt_len: int) -> list[str]:
    """Category of each position of a natural-language reasoning sequence."""
    labels = []
    for i, tok in enumerate(tokens):
        word = tok.strip().lower().strip(".,!?:")
        if i < prompt_len:
            labels.append("prompt")
        elif word in _MARKERS:
            labels.append("discourse marker")
        elif "\n\n" in tok:
            labels.append("blank line")
        elif _NEGATION.match(word):
            labels.append("negation")
        elif tok.strip().strip("()") in ("A", "B", "C", "D"):
            labels.append("answer option")
        elif re.fullmatch(r"\s*\d+([.,]\d+)?\s*", tok):
            labels.append("number")
        else:
            labels.append("other")
    return labels


def category_mass(weights: Sequence[float], labels: Sequence[str]) -> dict[str, float]:
    """Attention mass per category; ``weights`` and ``labels`` cover the same positions."""
    weights = np.asarray(weights, dtype=float)
    if len(weights) != len(labels):
        raise ValueError(f"{len(weights)} weights for {len(labels)} labels")
    out: dict[str, float] = {}
    for w, label in zip(weights, labels):
        out[label] = out.get(label, 0.0) + float(w)
    return out


def span_enrichment(weights: Sequence[float], span: tuple[int, int], region: tuple[int, int]) -> float:
    """Attention mass on positions ``span`` divided by the mass a uniform reader of ``region`` would
    put there (1 = no preference; > 1 = the span draws more attention than its length)."""
    weights = np.asarray(weights, dtype=float)
    lo, hi = region
    mass = weights[span[0]:span[1]].sum() / max(weights[lo:hi].sum(), 1e-12)
    return float(mass / ((span[1] - span[0]) / (hi - lo)))


# ---------------------------------------------------------------- studies on a bank
def attention_records(scorer: StopScorer, bank: Any, tokenizer: Any, prefix_len: int, *,
                      paths_per_problem: int = 8, query: str = "last", layers: str | int = "all") -> list[dict[str, Any]]:
    """[STOP] attention for the unfinished prefixes of the first paths of each problem.

    Each record: problem id, sample index, score, path correctness, key-position weights over
    prompt + prefix (the [STOP] positions dropped and the rest renormalized), token strings,
    categories, and for problems of a generated task with a step checker (:mod:`stoplib.tasks`)
    the token span of the step line holding the prefix's first error (None if the prefix has
    none) and the spans of every step line.
    """
    from .tasks import task_of

    records = []
    for bp in bank.problems:
        task = task_of(bp.problem)
        checker = task.check_path if task is not None else None
        for path, correct in list(zip(bp.paths, bp.correct))[:paths_per_problem]:
            prefix = path.prefix(prefix_len)
            if prefix.finished:
                continue
            seq = list(prefix.prompt_ids) + list(prefix.token_ids)
            att, score = stop_attention(scorer, seq)
            weights = aggregate(att, query=query, layers=layers)[: len(seq)]
            weights = weights / weights.sum()
            tokens = token_strings(tokenizer, seq)
            prompt_len = len(prefix.prompt_ids)
            labels = categorize_steps(tokens, prompt_len) if checker else categorize_text(tokens, prompt_len)
            rec = {"problem": bp.problem.id, "sample_index": path.sample_index, "score": score, "correct": bool(correct),
                   "weights": weights, "tokens": tokens, "labels": labels, "prompt_len": prompt_len,
                   "error_span": None, "step_spans": []}
            if checker:
                rec.update(step_spans(bp.problem, tokens[prompt_len:], prompt_len, checker))
            records.append(rec)
    return records


def step_spans(problem: Any, tokens: Sequence[str], offset: int, check_path: Any) -> dict[str, Any]:
    """Token spans of the step lines of a generated prefix (token strings ``tokens``, positioned
    after ``offset`` prompt tokens), and the span and index of the line with the first error."""
    text = "".join(tokens)
    ends = np.cumsum([len(t) for t in tokens])  # character offset where each token ends

    def token_at(char: int) -> int:  # the token holding character ``char``
        return int(np.searchsorted(ends, char, side="right"))

    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    spans = []
    for s in starts:
        if s >= len(text):
            continue
        end = text.find("\n", s)
        first, last = token_at(s), token_at((end if end >= 0 else len(text)) - 1) + 1
        spans.append((offset + first, offset + max(last, first + 1)))
    err = check_path(problem, text).first_error_char
    error_span, error_step = None, None
    if err is not None and err < len(text) and spans:
        error_step = max(i for i, s in enumerate(starts[: len(spans)]) if s <= err)
        error_span = spans[error_step]
    return {"error_span": error_span, "error_step": error_step, "step_spans": spans}


def category_table(records: Sequence[dict[str, Any]], *, quantile: float = 0.25, n_boot: int = 1000,
                   seed: int = 0) -> "Any":
    """Mean attention mass per category for the top vs bottom ``quantile`` of prefixes by score,
    with percentile-bootstrap 95% intervals over prefixes (``metrics.bootstrap_ci``)."""
    import pandas as pd

    scores = np.array([r["score"] for r in records])
    hi_cut, lo_cut = np.quantile(scores, 1 - quantile), np.quantile(scores, quantile)
    groups = {"high score": [r for r in records if r["score"] >= hi_cut],
              "low score": [r for r in records if r["score"] <= lo_cut]}
    cats = sorted({label for r in records for label in r["labels"]})
    rows = []
    for group, recs in groups.items():
        masses = np.array([[category_mass(r["weights"], r["labels"]).get(c, 0.0) for c in cats] for r in recs])
        for j, c in enumerate(cats):
            ci = bootstrap_ci(masses[:, j], n_boot=n_boot, seed=seed)
            rows.append({"group": group, "category": c, "mass": ci.estimate, "ci_low": ci.low, "ci_high": ci.high,
                         "n": len(recs)})
    return pd.DataFrame(rows)


def enrichment_metrics(enrichment: "Any") -> dict[str, Any]:
    """The enrichment table of :func:`error_step_enrichment` for a metrics file; None where no
    doomed prefix had a clean counterpart of the same problem (nothing to measure)."""
    rows = enrichment.set_index("group")

    def value(group: str, column: str = "enrichment") -> float | None:
        row = rows.loc[group]
        return float(row[column]) if row["n"] > 0 else None

    diff = "difference (paired)"
    return {"error_step_enrichment": value("first wrong step, doomed prefix"),
            "control_enrichment": value("same step, clean prefixes (matched)"), "difference": value(diff),
            "difference_ci": [value(diff, "ci_low"), value(diff, "ci_high")], "pairs": int(rows.loc[diff, "n"])}


def error_step_enrichment(records: Sequence[dict[str, Any]], *, n_boot: int = 1000, seed: int = 0) -> "Any":
    """Does [STOP] attention concentrate on the first erroneous step of a doomed prefix?

    For each prefix with an error at step line s: the enrichment (attention mass / uniform share
    over the generated prefix) of line s. Matched control: the mean enrichment of line s in the
    error-free prefixes of the same problem. Returns the doomed and control means and their
    paired difference, each with a bootstrap 95% CI over the matched pairs.
    """
    import pandas as pd

    def enrichment(r: dict[str, Any], span: tuple[int, int]) -> float:
        return span_enrichment(r["weights"], span, (r["prompt_len"], len(r["weights"])))

    clean: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if r["error_span"] is None:
            for step, span in enumerate(r["step_spans"]):
                clean.setdefault((r["problem"], step), []).append(enrichment(r, span))
    doomed, control = [], []
    for r in records:
        key = (r["problem"], r.get("error_step"))
        if r["error_span"] is not None and key in clean:
            doomed.append(enrichment(r, r["error_span"]))
            control.append(float(np.mean(clean[key])))
    groups = ("first wrong step, doomed prefix", "same step, clean prefixes (matched)", "difference (paired)")
    if not doomed:
        return pd.DataFrame([{"group": g, "enrichment": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": 0}
                             for g in groups])
    cis = (bootstrap_ci(doomed, n_boot=n_boot, seed=seed), bootstrap_ci(control, n_boot=n_boot, seed=seed),
           paired_bootstrap_ci(doomed, control, n_boot=n_boot, seed=seed))
    return pd.DataFrame([{"group": g, "enrichment": ci.estimate, "ci_low": ci.low, "ci_high": ci.high, "n": len(doomed)}
                         for g, ci in zip(groups, cis)])
