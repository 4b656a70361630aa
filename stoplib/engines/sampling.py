"""Token sampling with counter-based randomness, and per-token statistics.

Each path owns a random stream keyed by (seed, prompt, sample index, token position):
``uniforms`` hashes that key with splitmix64. A path's tokens therefore do not depend on
the batch it was sampled in, on how many other paths exist, or on whether it was paused
and resumed: Launch -> Resume reproduces uninterrupted generation, and a bank of complete
paths equals what the online pipeline samples with the same seed.

Sampling order follows vLLM and HF: temperature, then top-k, then top-p (the smallest set
whose probability reaches p; the most likely token is always kept), then inverse-CDF
sampling on the renormalized distribution.

Large vocabularies (``vocab >= FAST_PATH_MIN_VOCAB``) with ``0 < top_k < vocab`` take a fast path
(``top_k_candidates``): only the top-k candidates (plus any tokens tied with the k-th) are sorted,
filtered by top-p and sampled, instead of sorting the whole vocabulary. It samples from the same
distribution and walks the CDF in the same (vocabulary id) order, so the same uniform gives the
same token up to float rounding of the probabilities. Small vocabularies keep the reference path
(``filtered_probs``) bit for bit: the built-in organism (vocab 100) and its stored results use it.
``token_stats`` likewise computes the entropy with fewer full-vocabulary temporaries from that
size on, and exactly as before below it.
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


# Below this vocabulary size sampling always takes the reference path. A full sort of 100 (or
# 1000) logits costs next to nothing, and the reference path is what the organism's stored results
# were sampled with: the fast path draws from the same distribution but its probabilities can
# differ in the last float bit (softmax sums in a different order), which could flip a token whose
# uniform falls within ~1e-7 of a CDF boundary. From ~1k tokens on, the sort over the vocabulary
# dominates a sampling step, and the fast path pays.
FAST_PATH_MIN_VOCAB = 1024


def top_k_candidates(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-k/top-p filtered distribution restricted to its candidates (``0 < top_k < V``).

    Returns (ids (rows, K), probs (rows, K)): candidate token ids in increasing id order and their
    probabilities under ``filtered_probs`` (0 for candidates top-p drops); every token outside
    ``ids`` has probability 0. K is ``top_k``, or more when tokens tie with the k-th logit: like
    the reference, every token whose logit equals the k-th largest is kept.
    """
    vocab = logits.shape[-1]
    if not 0 < top_k < vocab:
        raise ValueError(f"top_k_candidates needs 0 < top_k < vocab ({vocab}), got {top_k}")
    # Dividing by the temperature is monotone, so the top k+1 raw logits divided by it are the top
    # k+1 of ``logits / temperature`` (what the reference filters), bit for bit, without dividing
    # the whole vocabulary. The (k+1)-th tells whether tokens tie with the k-th after the division.
    raw = logits.float()
    vals, ids = torch.topk(raw, top_k + 1, dim=-1)  # sorted, descending
    vals = vals / temperature
    if bool((vals[:, top_k] == vals[:, top_k - 1]).any()):
        # ties with the k-th value: the reference keeps every one of them (rare with real logits)
        x = raw / temperature
        kth = vals[:, top_k - 1 : top_k]
        width = int((x >= kth).sum(-1).max())
        vals, ids = torch.topk(x, width, dim=-1)
        vals = vals.masked_fill(vals < kth, float("-inf"))  # rows with fewer ties than the widest
    else:
        vals, ids = vals[:, :top_k], ids[:, :top_k]
    ids, order = torch.sort(ids, dim=-1)  # the reference's CDF runs in vocabulary order
    probs = torch.softmax(vals.gather(-1, order), dim=-1)
    if top_p < 1.0:  # as in filtered_probs; the stable sort breaks ties by id, like the reference's
        sorted_probs, rank = torch.sort(probs, dim=-1, descending=True, stable=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
        drop_sorted = before >= top_p
        drop_sorted[:, 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, rank, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum(-1, keepdim=True)
    return ids, probs


def _inverse_cdf(probs: torch.Tensor, u: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Column index per row where the float64 CDF of ``probs`` passes ``u`` (rows,) times its total,
    and whether that search ran past the last column (only through rounding)."""
    cdf = torch.cumsum(probs.double(), dim=-1)
    target = torch.as_tensor(u, dtype=torch.float64, device=probs.device).unsqueeze(1) * cdf[:, -1:]
    idx = torch.searchsorted(cdf, target, right=True).squeeze(1)
    last = probs.shape[-1] - 1
    return torch.clamp(idx, max=last), idx > last


def sample_tokens(
    logits: torch.Tensor,
    u: np.ndarray,
    temperature: float,
    top_k: int,
    top_p: float,
    *,
    fast: bool | None = None,
) -> torch.Tensor:
    """Sample one token per row of ``logits`` (rows, V) using the uniforms ``u`` (rows,).

    ``fast`` chooses the top-k candidate path (None: when ``V >= FAST_PATH_MIN_VOCAB``); it is
    used only when ``0 < top_k < V``. Both paths sample the same distribution.
    """
    if temperature == 0:
        return torch.argmax(logits, dim=-1)
    vocab = logits.shape[-1]
    if fast is None:
        fast = vocab >= FAST_PATH_MIN_VOCAB
    if fast and 0 < top_k < vocab:
        ids, probs = top_k_candidates(logits, temperature, top_k, top_p)
        col, past_end = _inverse_cdf(probs, u)
        tokens = ids.gather(1, col.unsqueeze(1)).squeeze(1)
        # as the reference: never a zero-probability token, and a search past the end lands on the
        # vocabulary's last token (kept only if it is a candidate, i.e. the last one here)
        bad = (probs.gather(1, col.unsqueeze(1)).squeeze(1) <= 0) | (past_end & (tokens != vocab - 1))
        if bool(bad.any()):
            best = ids.gather(1, torch.argmax(probs, dim=-1, keepdim=True)).squeeze(1)
            tokens = torch.where(bad, best, tokens)
        return tokens
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
    if logp.shape[-1] >= FAST_PATH_MIN_VOCAB:
        # one (rows, V) temporary instead of four: p * log p in place; its NaNs are the 0 * -inf
        # terms of tokens with a -inf logit, which contribute 0 (as the reference's where does)
        entropy = -logp.exp().mul_(logp).nansum(-1)
    else:  # the reference, bit for bit (the organism's stored statistics)
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
