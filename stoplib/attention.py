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
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .stop import StopScorer, _decoder, left_pad


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
            out = _decoder(scorer.model)(
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


def categorize_toy(tokens: Sequence[str], prompt_len: int) -> list[str]:
    """Category of each position of an organism sequence (prompt + path + [STOP]s)."""
    labels, in_answer = [], False
    text_so_far = ""
    for i, tok in enumerate(tokens):
        text_so_far += tok
        if i < prompt_len:
            labels.append("prompt")
        elif in_answer or text_so_far.endswith("\\boxed{") or tok == "\\":
            in_answer = True
            labels.append("answer")
        elif tok.isdigit():
            labels.append("digit")
        elif tok in ("*", "+", "-", "="):
            labels.append("operator")
        elif tok in ("\n", ":") or (len(tok) == 1 and tok.isalpha()):
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
