"""Token sampling with counter-based randomness, and per-token statistics.

Each path owns a random stream keyed by (seed, prompt, sample index, token position):
``uniforms`` hashes that key with splitmix64. A path's tokens therefore do not depend on
the batch it was sampled in, on how many other paths exist, or on whether it was paused
and resumed: Launch -> Resume reproduces uninterrupted generation, and a bank of complete
paths equals what the online pipeline samples with the same seed.

Sampling order follows vLLM and HF: temperature, then top-k, then top-p (the smallest set
whose probability reaches p; the most likely token is always kept), then inverse-CDF
sampling on the renormalized distribution.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np
import torch

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def stream_key(seed: int, prompt_ids: Sequence[int], sample_index: int) -> int:
    """A 64-bit key for one path's random stream: seed, prompt content and sample index."""
    digest = hashlib.blake2b(
        np.asarray(prompt_ids, dtype=np.int64).tobytes()
        + np.asarray([seed, sample_index], dtype=np.int64).tobytes(),
        digest_size=8,
    ).digest()
    return int.from_bytes(digest, "little")


def uniforms(keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Uniform numbers in [0, 1), one per (key, position) pair: float64 array."""
    keys = np.asarray(keys, dtype=np.uint64)
    positions = np.asarray(positions, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = _splitmix64(_splitmix64(keys) ^ (positions * np.uint64(0xD1B54A32D192ED03)))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)


def filtered_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Sampling distribution (rows, V) after temperature, top-k and top-p, renormalized."""
    logits = logits.float() / temperature
    vocab = logits.shape[-1]
    if 0 < top_k < vocab:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of strictly better tokens
        drop_sorted = before >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs


def sample_tokens(
    logits: torch.Tensor,
    u: np.ndarray,
    temperature: float,
    top_k: int,
    top_p: float,
) -> torch.Tensor:
    """Sample one token per row of ``logits`` (rows, V) using the uniforms ``u`` (rows,)."""
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    probs = filtered_probs(logits, temperature, top_k, top_p).double()
    cdf = torch.cumsum(probs, dim=-1)
    target = torch.as_tensor(u, dtype=torch.float64, device=logits.device).unsqueeze(1) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, target, right=True).squeeze(1)
    idx = torch.minimum(idx, torch.tensor(logits.shape[-1] - 1, device=logits.device))
    # never return a zero-probability token (possible only through rounding at the CDF's end)
    bad = probs.gather(1, idx.unsqueeze(1)).squeeze(1) <= 0
    if bool(bad.any()):
        idx = torch.where(bad, torch.argmax(probs, dim=-1), idx)
    return idx


def token_stats(
    logits: torch.Tensor, chosen: torch.Tensor, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw-distribution statistics for a step.

    Returns (chosen logprob (rows,), entropy in nats (rows,), top ids (rows, k),
    top logprobs (rows, k)), all as float32/int32 numpy arrays.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)
    chosen_lp = logp.gather(1, chosen.unsqueeze(1)).squeeze(1)
    p = logp.exp()
    entropy = -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)
    if k > 0:
        top = torch.topk(logp, min(k, logp.shape[-1]), dim=-1)
        top_ids, top_lp = top.indices.to(torch.int32), top.values
    else:
        top_ids = torch.zeros((logp.shape[0], 0), dtype=torch.int32)
        top_lp = torch.zeros((logp.shape[0], 0))
    return (
        chosen_lp.cpu().numpy().astype(np.float32),
        entropy.cpu().numpy().astype(np.float32),
        top_ids.cpu().numpy(),
        top_lp.cpu().numpy().astype(np.float32),
    )
