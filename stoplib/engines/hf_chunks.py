"""The HF engine's batches of rows ("chunks"): their decoding state, and what is done to them
without the model: grouping chunks into batches, merging them into one (caches right-aligned), and
moving a decode's per-step buffers into the paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection

import numpy as np
import torch

from .append import append_tokens
from .base import ReasoningPath
from .kv import concat_right_aligned

# Cache positions reserved beyond the longest sequence a chunk will generate: STOP's Check appends
# M [STOP] tokens (M=4 by default) to a paused cache and crops them off again.
CACHE_SLACK = 16


@dataclass
class Chunk:
    """Decoding state of a batch of rows."""

    paths: list[ReasoningPath]  # one per row still in the batch (compaction drops finished rows)
    keys: np.ndarray  # (rows,) uint64 random-stream keys
    cache: Any  # transformers Cache; covers prompt + generated tokens of every row
    mask: torch.Tensor  # (rows, S) attention mask of the cached positions
    next_logits: torch.Tensor  # (rows, V) raw logits of the next token


def pack_chunks(chunks: list[Chunk], batch_size: int) -> list[list[Chunk]]:
    """Consecutive chunks grouped into batches of at most ``batch_size`` rows (a chunk with
    more rows stays alone)."""
    packs: list[list[Chunk]] = []
    rows = 0
    for chunk in chunks:
        if packs and rows + len(chunk.paths) <= batch_size:
            packs[-1].append(chunk)
            rows += len(chunk.paths)
        else:
            packs.append([chunk])
            rows = len(chunk.paths)
    return packs


def merge_chunks(chunks: list[Chunk], max_new: int) -> Chunk:
    """One chunk with the rows of ``chunks``, its cache sized for decoding up to ``max_new`` tokens.

    Rows keep their positions: each chunk's cache and mask are right-aligned to the widest,
    with masked zeros on the left (as left-padded prompts are).
    """
    width = max(chunk.mask.shape[1] for chunk in chunks)
    done = min(path.generated_tokens for chunk in chunks for path in chunk.paths)
    reserve = width + max_new - done + CACHE_SLACK
    if len(chunks) == 1:
        chunk = chunks[0]
        if hasattr(chunk.cache, "reserve"):
            chunk.cache.reserve(reserve)
        return chunk
    widths = [chunk.mask.shape[1] for chunk in chunks]
    cache = concat_right_aligned([chunk.cache for chunk in chunks], widths, width, reserve)
    mask = chunks[0].mask.new_zeros((sum(len(chunk.paths) for chunk in chunks), width))
    start = 0
    for chunk, n in zip(chunks, widths):
        mask[start : start + len(chunk.paths), width - n :] = chunk.mask
        start += len(chunk.paths)
    return Chunk(paths=[path for chunk in chunks for path in chunk.paths],
                 keys=np.concatenate([chunk.keys for chunk in chunks]), cache=cache, mask=mask,
                 next_logits=torch.cat([chunk.next_logits for chunk in chunks]))


def append_steps(paths: list[ReasoningPath], steps: list[tuple[np.ndarray, ...]], max_new: int,
                 eos_ids: Collection[int]) -> None:
    """Move the per-step buffers (emitted mask, tokens, statistics) of a decode into the paths, and
    set finish reasons ("stop" at an end-of-sequence id, "length" at ``max_new`` tokens)."""
    if not steps:
        return
    emit, tokens, lp, ent, top_ids, top_lp = (np.stack(x) for x in zip(*steps))  # (steps, rows, ...)
    for r, path in enumerate(paths):
        sel = emit[:, r]
        if not sel.any():
            continue
        new_tokens = tokens[sel, r].tolist()
        append_tokens(path, new_tokens, lp[sel, r], ent[sel, r], top_ids[sel, r], top_lp[sel, r])
        if new_tokens[-1] in eos_ids:
            path.finish_reason = "stop"
        elif path.generated_tokens >= max_new:
            path.finish_reason = "length"
