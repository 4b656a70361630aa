"""Growing a ``ReasoningPath`` by newly generated tokens and their per-token statistics (both engines)."""

from __future__ import annotations

import numpy as np

from .base import ReasoningPath


def append_tokens(path: ReasoningPath, tokens: list[int], logprobs: np.ndarray, entropies: np.ndarray,
                  top_ids: np.ndarray, top_logprobs: np.ndarray) -> None:
    """Extend ``path`` by ``tokens`` (T) with their chosen-token log-probabilities and entropies (T,)
    and their top-k ids and log-probabilities (T, k)."""
    path.token_ids = path.token_ids + tokens
    path.logprobs = np.concatenate([path.logprobs, logprobs])
    path.entropies = np.concatenate([path.entropies, entropies])
    k = top_ids.shape[-1]
    old_ids = path.top_ids.reshape(-1, k) if path.top_ids.size else np.zeros((0, k), np.int32)
    old_lp = path.top_logprobs.reshape(-1, k) if path.top_logprobs.size else np.zeros((0, k), np.float32)
    path.top_ids = np.concatenate([old_ids, top_ids])
    path.top_logprobs = np.concatenate([old_lp, top_logprobs])
