"""The Hugging Face transformers engine: batched sampling with a KV cache, Launch/Resume.

Rows (one per path) are decoded in lock-step in chunks of ``batch_size``. Each prompt is
encoded once per chunk and its KV cache is shared by the chunk's samples of it. Prompts
are left-padded; position ids follow each row's true length (``cumsum(mask) - 1``).

Launch stops every row after ``prefix_len`` generated tokens and *encodes the last one*,
so the paused KV cache covers prompt + whole prefix and the next-token logits are ready:
a scorer such as STOP can read the cache as is, and Resume samples the next token
directly, without re-encoding anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, Sequence

import numpy as np
import torch

from .base import Launch, Path, SamplingParams, as_token_ids, check_keep, keep_all
from .kv import GrowingCache
from .sampling import sample_tokens, stream_key, token_stats, uniforms


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """"auto" -> bfloat16 on GPU, float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def load_model_and_tokenizer(
    model: str | FsPath,
    *,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a hub id or a local directory (eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    kwargs: dict[str, Any] = dict(dtype=resolve_dtype(dtype, dev), revision=revision,
                                  trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    lm = AutoModelForCausalLM.from_pretrained(str(model), **kwargs).to(dev).eval()
    tok = AutoTokenizer.from_pretrained(str(model), revision=revision, trust_remote_code=trust_remote_code)
    return lm, tok


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    gen = getattr(model, "generation_config", None)
    for value in (getattr(gen, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if not ids:
        raise ValueError("the model has no end-of-sequence token (generation_config.eos_token_id)")
    return ids


@dataclass
class _Chunk:
    """Decoding state of a batch of rows (engine-private)."""

    paths: list[Path]  # one per row
    keys: np.ndarray  # (rows,) uint64 random-stream keys
    cache: Any  # transformers Cache; covers prompt + generated tokens of every row
    mask: torch.Tensor  # (rows, S) attention mask of the cached positions
    next_logits: torch.Tensor  # (rows, V) raw logits of the next token


class HFEngine:
    """Sampling engine on a transformers causal LM (any local path or hub id).

    >>> engine = HFEngine("path/to/model")                       # doctest: +SKIP
    >>> launch = engine.launch(prompts, n=64, prefix_len=2048, params=SamplingParams())
    >>> kept = engine.resume(launch, keep=[[3, 7], ...])          # only those paths go on
    """

    name = "hf"

    def __init__(
        self,
        model: str | FsPath | Any,
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
    ) -> None:
        if isinstance(model, (str, FsPath)):
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
        self.device = next(model.parameters()).device
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        self._eos_tensor = torch.tensor(sorted(self.eos_ids), device=self.device)

    # ------------------------------------------------------------------ public API
    def generate(self, prompts: Sequence[Sequence[int]], n: int, params: SamplingParams) -> list[list[Path]]:
        """Sample ``n`` complete paths for each prompt."""
        launch = self._start(prompts, n, params.max_new_tokens, params)
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

    def resume(self, launch: Launch, keep: Sequence[Sequence[int]]) -> list[list[Path]]:
        """Continue the kept paths to completion from their cached state; free the others."""
        if launch.state is None:
            raise ValueError("this launch was already resumed or released")
        keep = check_keep(launch, keep)
        wanted = {(p, i) for p, group in enumerate(keep) for i in group}
        for chunk in launch.state:
            rows = [r for r, path in enumerate(chunk.paths) if (path.prompt_index, path.sample_index) in wanted]
            if not rows:
                continue
            self._select(chunk, rows)
            self._decode(chunk, launch.params.max_new_tokens, launch.params)
        self.release(launch)
        by_key = {(path.prompt_index, path.sample_index): path for path in launch.flat()}
        return [[by_key[(p, i)] for i in group] for p, group in enumerate(keep)]

    def resume_all(self, launch: Launch) -> list[list[Path]]:
        return self.resume(launch, keep_all(launch))

    def release(self, launch: Launch) -> None:
        """Free the cached state of a launch."""
        launch.state = None

    def prefix_states(self, launch: Launch):
        """Yield (paths, cache, attention_mask) per chunk of a paused launch, for Check.

        A scorer may append to the cache but must restore it (``cache.crop(-m)``) before
        returning; rows follow ``paths``.
        """
        if launch.state is None:
            raise ValueError("this launch was already resumed or released")
        for chunk in launch.state:
            yield chunk.paths, chunk.cache, chunk.mask

    # ------------------------------------------------------------------ internals
    def _start(self, prompts: Sequence[Sequence[int]], n: int, target: int, params: SamplingParams) -> Launch:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        prompts = [as_token_ids(p, i) for i, p in enumerate(prompts)]
        rows = [(p, i) for p in range(len(prompts)) for i in range(n)]
        chunks = []
        for start in range(0, len(rows), self.batch_size):
            part = rows[start : start + self.batch_size]
            chunk = self._prefill(prompts, part, params)
            self._decode(chunk, target, params)
            chunks.append(chunk)
        paths: list[list[Path]] = [[] for _ in prompts]
        for chunk in chunks:
            for path in chunk.paths:
                path.prefix_tokens = path.generated_tokens
                paths[path.prompt_index].append(path)
        return Launch(paths=paths, params=params, prefix_len=target, state=chunks)

    @torch.no_grad()
    def _prefill(self, prompts: list[list[int]], rows: list[tuple[int, int]], params: SamplingParams) -> _Chunk:
        unique = sorted({p for p, _ in rows})
        width = max(len(prompts[p]) for p in unique)
        ids = torch.full((len(unique), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(unique), width), dtype=torch.long)
        for r, p in enumerate(unique):
            ids[r, width - len(prompts[p]):] = torch.tensor(prompts[p])
            mask[r, width - len(prompts[p]):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        out = self.model(
            input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
            past_key_values=GrowingCache() if self.growing_cache else None, use_cache=True, logits_to_keep=1,
        )
        cache = out.past_key_values
        index = torch.tensor([unique.index(p) for p, _ in rows], device=self.device)
        if len(unique) != len(rows) or not torch.equal(index, torch.arange(len(rows), device=self.device)):
            cache.batch_select_indices(index)
        keys = np.array([stream_key(params.seed, prompts[p], i) for p, i in rows], dtype=np.uint64)
        paths = [Path(prompt_index=p, sample_index=i, prompt_ids=prompts[p]) for p, i in rows]
        return _Chunk(paths=paths, keys=keys, cache=cache, mask=mask[index], next_logits=out.logits[index, -1, :])

    def _select(self, chunk: _Chunk, rows: list[int]) -> None:
        if rows == list(range(len(chunk.paths))):
            return
        index = torch.tensor(rows, device=self.device)
        chunk.cache.batch_select_indices(index)
        chunk.mask = chunk.mask[index]
        chunk.next_logits = chunk.next_logits[index]
        chunk.keys = chunk.keys[rows]
        chunk.paths = [chunk.paths[r] for r in rows]

    @torch.no_grad()
    def _decode(self, chunk: _Chunk, target: int, params: SamplingParams) -> None:
        """Extend every unfinished row until it stops or has ``target`` generated tokens.

        All unfinished rows of a chunk have the same length, so they advance in lock-step.
        Rows that need no token are fed padding with a zero attention mask.
        """
        paths, max_new = chunk.paths, params.max_new_tokens
        steps: list[tuple[np.ndarray, ...]] = []  # per step: (emitted mask, tokens, stats...)
        steps_iter = range(target)
        if self.progress:
            from tqdm.auto import tqdm

            steps_iter = tqdm(steps_iter, desc="decode", leave=False)
        finished = np.array([p.finished for p in paths])
        lengths = np.array([p.generated_tokens for p in paths])
        for _ in steps_iter:
            emit = ~finished & (lengths < target)
            if not emit.any():
                break
            u = uniforms(chunk.keys, lengths)
            tokens = sample_tokens(chunk.next_logits, u, params.temperature, params.top_k, params.top_p)
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
        self._append(paths, steps, max_new)

    def _append(self, paths: list[Path], steps: list[tuple[np.ndarray, ...]], max_new: int) -> None:
        """Move the per-step buffers into the paths, and set finish reasons."""
        if not steps:
            return
        emit, tokens, lp, ent, top_ids, top_lp = (np.stack(x) for x in zip(*steps))  # (steps, rows, ...)
        for r, path in enumerate(paths):
            sel = emit[:, r]
            if not sel.any():
                continue
            new_tokens = tokens[sel, r].tolist()
            path.token_ids = path.token_ids + new_tokens
            path.logprobs = np.concatenate([path.logprobs, lp[sel, r]])
            path.entropies = np.concatenate([path.entropies, ent[sel, r]])
            k = top_ids.shape[-1]
            old_ids = path.top_ids.reshape(-1, k) if path.top_ids.size else np.zeros((0, k), np.int32)
            old_lp = path.top_logprobs.reshape(-1, k) if path.top_logprobs.size else np.zeros((0, k), np.float32)
            path.top_ids = np.concatenate([old_ids, top_ids[sel, r]])
            path.top_logprobs = np.concatenate([old_lp, top_lp[sel, r]])
            if new_tokens[-1] in self.eos_ids:
                path.finish_reason = "stop"
            elif path.generated_tokens >= max_new:
                path.finish_reason = "length"
