"""The Hugging Face transformers engine: batched sampling with a KV cache, Launch/Resume.

Rows (one per path) are decoded in lock-step in chunks of ``batch_size``. Each prompt is
encoded once per chunk and its KV cache is shared by the chunk's samples of it. Prompts
are left-padded; position ids follow each row's true length (``cumsum(mask) - 1``).

Launch stops every row after ``prefix_len`` generated tokens and *encodes the last one*,
so the paused KV cache covers prompt + whole prefix and the next-token logits are ready:
a scorer such as STOP can read the cache as is, and Resume samples the next token
directly, without re-encoding anything. ``advance`` (progressive pruning) continues kept paths
to a larger length and pauses them again the same way, so a later Check reads the grown cache.

Speed and memory on real models (e.g. SmolLM2-135M: vocab 49k, 9 query / 3 KV heads):

- sampling restricts top-k/top-p to the top-k candidates when the vocabulary is large
  (``sampling.FAST_PATH_MIN_VOCAB``); small vocabularies (the organism) keep the reference path;
- compaction: once at least ``COMPACT_FRACTION`` of a chunk's rows have finished (and a few steps
  may remain), they are dropped from the batch (cache, mask, logits, keys), so finished paths stop
  costing compute. Paths are unchanged: the sampler is counter-based per path;
- grouped-query attention on CPU without copying KV heads, and large tensors in their own mmap
  (``stoplib.engines.hf_cpu``); both change no output bit;
- each chunk's KV cache is sized for what it will hold (``GrowingCache.reserve``): prompt + tokens
  to generate + ``CACHE_SLACK`` positions for Check's [STOP] tokens; ``generate`` frees each
  chunk as soon as it is done, and Resume drops every discarded path's state before it continues
  the kept ones;
- Resume packs the kept paths of several chunks (``resume_many``: of several launches) into
  batches of up to ``batch_size`` rows, each chunk's cache right-aligned to the widest (as
  left-padded prompts are), so pruning to k of N paths does not leave k-row batches to decode.

Loading a model and its tokenizer is ``stoplib.engines.hf_load``; the batches of rows (packing,
merging, moving step buffers into paths) ``stoplib.engines.hf_chunks``. Their names are importable
from here too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .base import Launch, ReasoningPath, SamplingParams, as_token_ids, check_keep, eos_ids, keep_all
from .hf_chunks import CACHE_SLACK, Chunk, append_steps, merge_chunks, pack_chunks
from .hf_cpu import GQA_SDPA, MMAP_THRESHOLD, limit_heap_fragmentation, use_gqa_sdpa  # noqa: F401
from .hf_load import load_model_and_tokenizer, resolve_device, resolve_dtype  # noqa: F401
from .kv import GrowingCache
from .sampling import sample_tokens, stream_key, token_stats, uniforms

# Drop finished rows from a chunk once at least this fraction of its rows has finished. A decode
# step costs about rows x (weights + that row's cache) and compaction costs one copy of the kept
# rows' cache (less than a step's work), so at >= 1/4 of the rows it pays for itself within a
# couple of steps; it is not tried when fewer than COMPACT_MIN_STEPS steps can remain. Rows whose
# finishing is rare (e.g. organism prefixes) are never copied for one or two stragglers.
COMPACT_FRACTION = 0.25
COMPACT_MIN_STEPS = 4


class HFEngine:
    """Sampling engine on a transformers causal LM (any local path or hub id).

    >>> engine = HFEngine("path/to/model")                       # doctest: +SKIP
    >>> launch = engine.launch(prompts, n=64, prefix_len=2048, params=SamplingParams())
    >>> kept = engine.resume(launch, keep=[[3, 7], ...])          # only those paths go on

    Speed/memory switches (defaults on; none changes a sampled token): ``compact`` drops finished
    rows from a batch, ``fast_sampling`` (None: by vocabulary size, False: always the reference
    full-vocabulary sort) samples among the top-k candidates, ``gqa_sdpa`` runs grouped-query
    attention without copying KV heads (CPU), ``mmap_threshold`` limits heap fragmentation (CPU,
    process-wide; None leaves malloc alone). See the module docstring.
    """

    name = "hf"

    def __init__(
        self,
        model: str | Path | Any,
        tokenizer: Any = None,
        *,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        batch_size: int = 64,
        revision: str | None = None,
        trust_remote_code: bool = False,
        attn_implementation: str | None = None,
        progress: bool = False,
        growing_cache: bool = True,
        compact: bool = True,
        fast_sampling: bool | None = None,
        gqa_sdpa: bool = True,
        mmap_threshold: int | None = MMAP_THRESHOLD,
    ) -> None:
        if isinstance(model, (str, Path)):
            model, loaded_tok = load_model_and_tokenizer(
                model, device=device, dtype=dtype, revision=revision,
                trust_remote_code=trust_remote_code, attn_implementation=attn_implementation,
            )
            tokenizer = tokenizer or loaded_tok
        if tokenizer is None:
            raise ValueError("pass a tokenizer together with an already loaded model")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.progress = progress
        self.growing_cache = growing_cache  # append in place (stoplib.engines.kv) instead of torch.cat
        self.compact = compact  # drop finished rows from the batch (COMPACT_FRACTION)
        self.fast_sampling = fast_sampling  # top-k candidate sampling: None = by vocabulary size
        if gqa_sdpa:
            use_gqa_sdpa(self.model)
        self.device = next(model.parameters()).device
        if mmap_threshold is not None and self.device.type == "cpu":
            limit_heap_fragmentation(mmap_threshold)  # process-wide; None leaves malloc alone
        self.eos_ids = eos_ids(model, tokenizer)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        self._eos_tensor = torch.tensor(sorted(self.eos_ids), device=self.device)

    # ------------------------------------------------------------------ public API
    def generate(
        self, prompts: Sequence[Sequence[int]], n: int, params: SamplingParams, *, seeds: Sequence[int] | None = None
    ) -> list[list[ReasoningPath]]:
        """Sample ``n`` complete paths for each prompt.

        ``seeds`` (optional): one sampling seed per prompt, overriding ``params.seed`` for that
        prompt's paths (their random streams are keyed by ``stream_key(seeds[p], prompt, i)``), so
        prompts with different seeds can share one call. The KV cache of each batch is freed as
        soon as its paths are complete.
        """
        launch = self._start(prompts, n, params.max_new_tokens, params, seeds=seeds, keep_state=False)
        for group in launch.paths:
            for path in group:
                path.prefix_tokens = None
        return launch.paths

    def launch(
        self, prompts: Sequence[Sequence[int]], n: int, prefix_len: int, params: SamplingParams
    ) -> Launch:
        """Sample ``n`` paths per prompt, paused after ``prefix_len`` tokens, KV cache kept."""
        if prefix_len < 1:
            raise ValueError(f"prefix_len must be >= 1, got {prefix_len}")
        return self._start(prompts, n, min(prefix_len, params.max_new_tokens), params)

    def resume(self, launch: Launch, keep: Sequence[Sequence[int]]) -> list[list[ReasoningPath]]:
        """Continue the kept paths to completion from their cached state; free the others."""
        return self.resume_many([launch], [keep])[0]

    def prune(self, launch: Launch, keep: Sequence[Sequence[int]]) -> None:
        """Free the state of every path not in ``keep`` (and of finished ones) now; a later
        ``resume``/``resume_many`` with the same ``keep`` continues the kept paths."""
        if launch.state is None:
            raise ValueError("this launch was already resumed or released")
        keep = check_keep(launch, keep)
        wanted = {(p, i) for p, group in enumerate(keep) for i in group}
        chunks, launch.state = launch.state, []
        for c in range(len(chunks)):
            chunk, chunks[c] = chunks[c], None
            rows = [r for r, path in enumerate(chunk.paths)
                    if (path.prompt_index, path.sample_index) in wanted and not path.finished]
            if rows:
                self._select(chunk, rows)
                launch.state.append(chunk)
            chunk = None

    def resume_many(
        self, launches: Sequence[Launch], keeps: Sequence[Sequence[Sequence[int]]]
    ) -> list[list[list[ReasoningPath]]]:
        """``resume`` of several launches (of equal sampling parameters) at once: first every
        discarded path's state is freed, then the kept paths of all launches continue together,
        packed into batches of up to ``batch_size`` rows (a pruned launch resumes a few paths per
        problem: packing keeps the batches full)."""
        if not launches and not keeps:
            return []
        params, keeps, live = self._take_kept(launches, keeps, "resume_many")
        packs, live = pack_chunks(live, self.batch_size), []
        for i in range(len(packs)):
            chunk = self._merge(packs[i], params.max_new_tokens)
            packs[i] = None
            self._decode(chunk, params.max_new_tokens, params)
            chunk = None  # this batch's paths are complete: free its cache before the next one grows
        out = []
        for launch, keep in zip(launches, keeps):
            by_key = {(path.prompt_index, path.sample_index): path for path in launch.flat()}
            out.append([[by_key[(p, i)] for i in group] for p, group in enumerate(keep)])
        return out

    def advance(self, launch: Launch, keep: Sequence[Sequence[int]], prefix_len: int) -> Launch:
        """Continue the kept paths up to ``prefix_len`` generated tokens and pause them again (a
        later stage of progressive pruning); see ``advance_many``."""
        return self.advance_many([launch], [keep], prefix_len)

    def advance_many(
        self, launches: Sequence[Launch], keeps: Sequence[Sequence[Sequence[int]]], prefix_len: int
    ) -> Launch:
        """Continue the kept paths of paused launches (of equal sampling parameters) up to
        ``prefix_len`` generated tokens, then pause them again, KV cache kept.

        The discarded paths' state is freed first; the kept ones decode together, packed into
        batches of up to ``batch_size`` rows, as in ``resume_many``. Returns one paused launch over
        the prompts of all ``launches`` in order: prompt p of ``launches[j]`` becomes prompt
        ``p + (prompts of launches[:j])`` (the paths' ``prompt_index`` is renumbered so), and holds
        that prompt's kept paths in the order given. It can be checked (``prefix_states``),
        pruned, advanced again or resumed; the given launches are consumed. Paths that end before
        ``prefix_len`` are complete there. The tokens are those of uninterrupted generation.
        """
        if not launches:
            raise ValueError("advance_many needs at least one launch")
        paused = max(launch.prefix_len for launch in launches)
        if prefix_len <= paused:
            raise ValueError(f"prefix_len={prefix_len} must exceed the launches' pause at {paused} tokens")
        groups: list[list[ReasoningPath]] = []
        for launch, keep in zip(launches, keeps):
            by_key = {(path.prompt_index, path.sample_index): path for path in launch.flat()}
            groups.extend([by_key[(p, i)] for i in group] for p, group in enumerate(check_keep(launch, keep)))
        params, keeps, live = self._take_kept(launches, keeps, "advance_many")
        target = min(prefix_len, params.max_new_tokens)
        packs, live = pack_chunks(live, self.batch_size), []
        chunks = []
        for i in range(len(packs)):
            chunk = self._merge(packs[i], target)
            packs[i] = None
            self._decode(chunk, target, params)
            if not all(path.finished for path in chunk.paths):
                chunks.append(chunk)
            chunk = None
        for q, group in enumerate(groups):
            for path in group:
                path.prompt_index = q
        return Launch(paths=groups, params=params, prefix_len=target, state=chunks)

    def resume_all(self, launch: Launch) -> list[list[ReasoningPath]]:
        return self.resume(launch, keep_all(launch))

    def release(self, launch: Launch) -> None:
        """Free the cached state of a launch."""
        launch.state = None

    def prefix_states(self, launch: Launch):
        """Yield (paths, cache, attention_mask) per chunk of a paused launch, for Check.

        A scorer may append to the cache but must restore it (``cache.crop(-m)``) before
        returning; rows follow ``paths``. Paths that ended before the pause may be missing
        (compaction dropped them; they need no score), but every unfinished path is there.
        """
        if launch.state is None:
            raise ValueError("this launch was already resumed or released")
        for chunk in launch.state:
            yield chunk.paths, chunk.cache, chunk.mask

    # ------------------------------------------------------------------ internals
    def _start(self, prompts: Sequence[Sequence[int]], n: int, target: int, params: SamplingParams, *,
               seeds: Sequence[int] | None = None, keep_state: bool = True) -> Launch:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        prompts = [as_token_ids(p, i) for i, p in enumerate(prompts)]
        if seeds is None:
            seeds = [params.seed] * len(prompts)
        else:
            seeds = [int(s) for s in seeds]
            if len(seeds) != len(prompts):
                raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        rows = [(p, i) for p in range(len(prompts)) for i in range(n)]
        chunks = []
        paths: list[list[ReasoningPath]] = [[] for _ in prompts]
        for start in range(0, len(rows), self.batch_size):
            part = rows[start : start + self.batch_size]
            chunk = self._prefill(prompts, part, params, seeds, target)
            for path in chunk.paths:  # before decoding: compaction drops finished rows from the chunk
                paths[path.prompt_index].append(path)
            self._decode(chunk, target, params)
            if keep_state and not all(path.finished for path in chunk.paths):
                chunks.append(chunk)  # a chunk whose paths all ended has nothing to resume
            chunk = None  # free a finished chunk before the next prefill
        for group in paths:
            for path in group:
                path.prefix_tokens = path.generated_tokens
        return Launch(paths=paths, params=params, prefix_len=target, state=chunks if keep_state else None)

    @torch.no_grad()
    def _prefill(self, prompts: list[list[int]], rows: list[tuple[int, int]], params: SamplingParams,
                 seeds: list[int], target: int) -> Chunk:
        unique = sorted({p for p, _ in rows})
        width = max(len(prompts[p]) for p in unique)
        ids = torch.full((len(unique), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(unique), width), dtype=torch.long)
        for r, p in enumerate(unique):
            ids[r, width - len(prompts[p]):] = torch.tensor(prompts[p])
            mask[r, width - len(prompts[p]):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        # capacity for everything this chunk will hold: prompt, the tokens to generate, Check's slack
        cache = GrowingCache(max_length=width + target + CACHE_SLACK) if self.growing_cache else None
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            past_key_values=cache, use_cache=True, logits_to_keep=1,
        )
        cache = out.past_key_values
        index = torch.tensor([unique.index(p) for p, _ in rows], device=self.device)
        if len(unique) != len(rows) or not torch.equal(index, torch.arange(len(rows), device=self.device)):
            cache.batch_select_indices(index)
        keys = np.array([stream_key(seeds[p], prompts[p], i) for p, i in rows], dtype=np.uint64)
        paths = [ReasoningPath(prompt_index=p, sample_index=i, prompt_ids=prompts[p]) for p, i in rows]
        return Chunk(paths=paths, keys=keys, cache=cache, mask=mask[index], next_logits=out.logits[index, -1, :])

    def _select(self, chunk: Chunk, rows: list[int]) -> None:
        if rows == list(range(len(chunk.paths))):
            return
        index = torch.tensor(rows, device=self.device)
        chunk.cache.batch_select_indices(index)
        chunk.mask = chunk.mask[index]
        chunk.next_logits = chunk.next_logits[index]
        chunk.keys = chunk.keys[rows]
        chunk.paths = [chunk.paths[r] for r in rows]

    def _take_kept(self, launches: Sequence[Launch], keeps: Sequence[Sequence[Sequence[int]]],
                   caller: str) -> tuple[SamplingParams, list[list[list[int]]], list[Chunk]]:
        """Check several launches (equal sampling parameters) and their keep selections, free every
        discarded path's state first (before any kept path grows), and hand over the kept paths'
        chunks: (parameters, checked keeps, chunks); the launches are consumed."""
        if len(launches) != len(keeps):
            raise ValueError(f"{len(keeps)} keep selections for {len(launches)} launches")
        params = launches[0].params
        if any(launch.params != params for launch in launches):
            raise ValueError(f"{caller} needs launches with the same sampling parameters")
        keeps = [check_keep(launch, keep) for launch, keep in zip(launches, keeps)]
        live: list[Chunk] = []
        for launch, keep in zip(launches, keeps):
            self.prune(launch, keep)
            live.extend(launch.state)
            launch.state = None
        return params, keeps, live

    def _merge(self, chunks: list[Chunk], max_new: int) -> Chunk:
        """One chunk with the rows of ``chunks`` (``merge_chunks``), its cache sized for decoding up
        to ``max_new`` tokens."""
        return merge_chunks(chunks, max_new)

    @torch.no_grad()
    def _decode(self, chunk: Chunk, target: int, params: SamplingParams) -> None:
        """Extend every unfinished row until it stops or has ``target`` generated tokens.

        Unfinished rows advance in lock-step, one token each per step.
        Rows that need no token are fed padding with a zero attention mask, until enough of them
        have finished that compaction drops them from the chunk (``COMPACT_FRACTION``).
        """
        max_new = params.max_new_tokens
        steps: list[tuple[np.ndarray, ...]] = []  # per step: (emitted mask, tokens, stats...)
        steps_iter = range(target)
        if self.progress:
            from tqdm.auto import tqdm

            steps_iter = tqdm(steps_iter, desc="decode", leave=False)
        finished = np.array([p.finished for p in chunk.paths], dtype=bool)
        lengths = np.array([p.generated_tokens for p in chunk.paths])
        for _ in steps_iter:
            emit = ~finished & (lengths < target)
            if not emit.any():
                break
            if self.compact and self._worth_compacting(emit, target - int(lengths[emit].min())):
                # the buffers follow the rows: flush them first
                append_steps(chunk.paths, steps, max_new, self.eos_ids)
                steps = []
                rows = np.flatnonzero(emit)
                self._select(chunk, rows.tolist())
                finished, lengths, emit = finished[rows], lengths[rows], emit[rows]
            u = uniforms(chunk.keys, lengths)
            tokens = sample_tokens(chunk.next_logits, u, params.temperature, params.top_k, params.top_p,
                                   fast=self.fast_sampling)
            tokens = torch.where(torch.as_tensor(emit, device=self.device), tokens,
                                 torch.full_like(tokens, self.pad_id))
            stats = token_stats(chunk.next_logits, tokens, params.logprobs)
            tok_np = tokens.cpu().numpy()
            steps.append((emit.copy(), tok_np) + stats)
            lengths = lengths + emit
            is_eos = np.isin(tok_np, list(self.eos_ids)) & emit
            finished = finished | is_eos | (emit & (lengths >= max_new))
            feed = emit & ~finished  # rows whose new token must be encoded to continue
            if not feed.any():
                break
            feed_t = torch.as_tensor(feed, device=self.device)
            chunk.mask = torch.cat([chunk.mask, feed_t.long().unsqueeze(1)], dim=1)
            position = (chunk.mask.cumsum(-1)[:, -1:] - 1).clamp(min=0)
            out = self.model(
                input_ids=torch.where(feed_t, tokens, torch.full_like(tokens, self.pad_id)).unsqueeze(1),
                attention_mask=chunk.mask, position_ids=position, past_key_values=chunk.cache, use_cache=True,
            )
            chunk.cache = out.past_key_values
            chunk.next_logits = out.logits[:, -1, :]
            del out
        append_steps(chunk.paths, steps, max_new, self.eos_ids)

    @staticmethod
    def _worth_compacting(emit: np.ndarray, steps_left: int) -> bool:
        """Drop the rows that emit no more tokens? (see COMPACT_FRACTION)"""
        idle = len(emit) - int(emit.sum())
        return idle > 0 and idle >= COMPACT_FRACTION * len(emit) and steps_left >= COMPACT_MIN_STEPS
