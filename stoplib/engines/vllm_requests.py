"""The vLLM engine's requests and what comes back: a seed per path and stage, the seeds per prompt
checked, the per-token statistics of a completion under the raw model distribution (chosen
log-probability, top-k, entropy), the prefix-cache counts of a batch of requests and the KV cache
that a launch's paused paths occupy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .base import ReasoningPath


def path_seed(seed: int, prompt_ids: Sequence[int], sample_index: int, stage: int) -> int:
    """A 63-bit per-request seed from (seed, prompt, sample index, stage): 0 = Launch/generate,
    1 = Resume. Independent of batching and of the other paths."""
    digest = hashlib.blake2b(
        np.asarray(prompt_ids, dtype=np.int64).tobytes()
        + np.asarray([seed, sample_index, stage], dtype=np.int64).tobytes(),
        digest_size=8, person=b"stoplib-vllm",
    ).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def topk_entropy(top_logprobs: np.ndarray, vocab_size: int) -> np.ndarray:
    """Entropy (nats) per row of ``top_logprobs`` (T, k), the tail mass spread uniformly over the
    other ``vocab_size - k`` tokens: the maximum entropy consistent with the top k (an upper bound
    on the true entropy). Returns (T,) float32; NaN when k = 0."""
    lp = np.asarray(top_logprobs, dtype=np.float64)
    if lp.ndim != 2 or lp.shape[1] == 0:
        return np.full(lp.shape[0] if lp.ndim else 0, np.nan, np.float32)
    p = np.exp(lp)
    head = -(p * np.where(p > 0, lp, 0.0)).sum(-1)
    rest = np.clip(1.0 - p.sum(-1), 0.0, 1.0)
    others = max(vocab_size - lp.shape[1], 0)
    tail = np.zeros_like(rest)
    if others:
        ok = rest > 0
        tail[ok] = -rest[ok] * np.log(rest[ok] / others)
    return (head + tail).astype(np.float32)


@dataclass
class CacheStats:
    """Prefix-cache use of Resume requests: prompt tokens submitted and served from the cache."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0

    @property
    def hit_rate(self) -> float:
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else float("nan")

    def add(self, other: "CacheStats") -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.cached_tokens += other.cached_tokens


def prompt_seeds(seeds: Sequence[int] | None, num_prompts: int, default: int) -> list[int] | None:
    """``seeds`` checked (one int per prompt), or None (every prompt uses ``default``)."""
    if seeds is None:
        return None
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
        raise TypeError(f"seeds must be a sequence of ints (one per prompt), got {type(seeds).__name__}")
    if len(seeds) != num_prompts:
        raise ValueError(f"seeds has {len(seeds)} entries for {num_prompts} prompts")
    out = []
    for i, s in enumerate(seeds):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"seeds[{i}] must be an int, got {type(s).__name__}")
        out.append(int(s))
    return out


def completion_stats(completion: Any, tokens: list[int], k: int, entropy_kind: str,
                     vocab_size: int) -> tuple[np.ndarray, ...]:
    """(chosen logprob (T,), entropy (T,), top ids (T, k), top logprobs (T, k)) of a completion, its
    ``tokens`` sampled; ``entropy_kind`` as ``VLLMEngine(entropy=...)``."""
    t = len(tokens)
    flat = completion.logprobs
    if flat is None or len(flat) != t:
        raise RuntimeError(f"vLLM returned logprobs for {0 if flat is None else len(flat)} of {t} tokens")
    starts = np.asarray(flat.start_indices)
    ends = np.asarray(flat.end_indices)
    width = ends - starts
    ids = np.asarray(flat.token_ids, dtype=np.int64)
    lps = np.asarray(flat.logprobs, dtype=np.float64)
    if not (width == width[0]).all():
        raise RuntimeError("vLLM returned a ragged logprob layout (expected sampled token + top-k per position)")
    w = int(width[0])
    ids, lps = ids.reshape(t, w), lps.reshape(t, w)
    if not np.array_equal(ids[:, 0], np.asarray(tokens)):
        raise RuntimeError("vLLM logprobs: the first entry of a position is not the sampled token")
    chosen = lps[:, 0].astype(np.float32)
    rest_ids, rest_lp = ids[:, 1:], lps[:, 1:]  # top entries in decreasing order (or the full row)
    if entropy_kind == "full":
        if rest_lp.shape[1] != vocab_size:
            raise RuntimeError(f"entropy='full' expected {vocab_size} log-probabilities per token, got {rest_lp.shape[1]}")
        order = np.argsort(-rest_lp, axis=1, kind="stable")
        rest_ids = np.take_along_axis(rest_ids, order, 1)
        rest_lp = np.take_along_axis(rest_lp, order, 1)
        p = np.exp(rest_lp)
        entropy = (-(p * np.where(p > 0, rest_lp, 0.0)).sum(-1)).astype(np.float32)
        rest_ids, rest_lp = rest_ids[:, :k], rest_lp[:, :k]
    elif entropy_kind == "topk":
        entropy = topk_entropy(rest_lp[:, :k], vocab_size)
    else:
        entropy = np.full(t, np.nan, np.float32)
    return chosen, entropy, rest_ids[:, :k].astype(np.int32), rest_lp[:, :k].astype(np.float32)


def paused_kv_tokens(paths: list[list[ReasoningPath]], block_size: int) -> int:
    """KV cache tokens, in whole blocks, that the prompts and paused prefixes of a launch occupy
    (prompt blocks shared by the paths of a prompt; prompts whose paths all ended hold none)."""
    b = block_size
    blocks = 0
    for group in paths:
        open_paths = [p for p in group if not p.finished]
        if open_paths:
            blocks += -(-group[0].prompt_tokens // b)
            blocks += sum(-(-(p.prompt_tokens % b + p.generated_tokens) // b) for p in open_paths)
    return blocks * b
