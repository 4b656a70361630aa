"""The engine protocol shared by the Hugging Face and vLLM engines, and its records.

An engine samples N reasoning paths per prompt and supports the paper's online
protocol (Launch -> Check -> Resume):

- ``launch(prompts, n, prefix_len, params)`` generates ``prefix_len`` tokens for every
  path and pauses, keeping whatever state lets it continue without re-encoding
  (the KV cache for the HF engine, the prefix cache for vLLM);
- a signal scores the paused prefixes (``Launch.paths``);
- ``resume(launch, keep)`` continues only the kept paths to completion.

An engine may also offer ``advance_many(launches, keeps, prefix_len)`` (the HF engine does): it
continues the kept paths to a larger length and pauses them again, for progressive pruning (a
schedule of checks at growing prefix lengths, ``stoplib.pipeline.run_pipeline(schedule=...)``).

``generate`` runs paths to completion in one go. Every generated token carries the
statistics that confidence signals need (chosen-token log-probability, entropy of the
full distribution, top-k log-probabilities), all under the model's raw distribution
(temperature 1, no top-k/top-p filtering), whatever the sampling temperature.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings; defaults are the paper's (T=0.6, top-p 0.95, top-k 40).

    ``temperature == 0`` means greedy decoding. ``max_new_tokens`` counts every generated
    token of a path (prefix and continuation together). ``logprobs`` is the number of
    top log-probabilities recorded per token (0 records none). Sampling is keyed by
    ``seed``: the same seed gives the same paths.
    """

    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 40
    max_new_tokens: int = 16384
    seed: int = 0
    logprobs: int = 20

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {self.top_k}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.logprobs < 0:
            raise ValueError(f"logprobs must be >= 0, got {self.logprobs}")

    def with_(self, **changes: Any) -> "SamplingParams":
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass
class ReasoningPath:
    """One sampled reasoning path and its per-token statistics.

    Arrays have one row per generated token (T = ``len(token_ids)``): ``logprobs`` (T,)
    chosen-token log-probability, ``entropies`` (T,) entropy of the full next-token
    distribution in nats, ``top_ids`` / ``top_logprobs`` (T, k) the k most likely tokens.
    ``finish_reason`` is "stop" (an end-of-sequence token was generated; it is the last
    entry of ``token_ids``), "length" (``max_new_tokens`` reached) or None while paused.
    """

    prompt_index: int
    sample_index: int
    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    logprobs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    entropies: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    top_ids: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int32))
    top_logprobs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    finish_reason: str | None = None
    prefix_tokens: int | None = None  # generated tokens when the path was paused at Launch

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def generated_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def continuation_tokens(self) -> int:
        """Tokens generated after the Launch pause (all of them if never paused)."""
        return len(self.token_ids) - (self.prefix_tokens or 0)

    def prefix(self, length: int) -> "ReasoningPath":
        """A view of the first ``length`` generated tokens, as a paused path.

        A complete path contains its own prefix at every length, so a bank of complete
        paths can be replayed at any prefix length. The prefix is "finished" only if the
        path ended within it.
        """
        length = min(length, len(self.token_ids))
        ended = length == len(self.token_ids) and self.finish_reason is not None
        return ReasoningPath(
            prompt_index=self.prompt_index,
            sample_index=self.sample_index,
            prompt_ids=self.prompt_ids,
            token_ids=self.token_ids[:length],
            logprobs=self.logprobs[:length],
            entropies=self.entropies[:length],
            top_ids=self.top_ids[:length],
            top_logprobs=self.top_logprobs[:length],
            finish_reason=self.finish_reason if ended else None,
            prefix_tokens=length,
        )


@dataclass
class Launch:
    """Paths paused after Launch, plus the engine state needed to resume them.

    ``paths[p][i]`` is sample i of prompt p. ``state`` is engine-private (notebooks and
    signals must not reach into it; STOP's Check goes through the engine's own hooks).
    """

    paths: list[list[ReasoningPath]]
    params: SamplingParams
    prefix_len: int
    state: Any = None

    def flat(self) -> list[ReasoningPath]:
        return [path for group in self.paths for path in group]


@runtime_checkable
class Engine(Protocol):
    """What every engine provides. See the module docstring for the protocol."""

    tokenizer: Any

    def generate(
        self, prompts: Sequence[Sequence[int]], n: int, params: SamplingParams, *, seeds: Sequence[int] | None = None
    ) -> list[list[ReasoningPath]]:
        """Sample ``n`` complete paths for each prompt (token ids); ``seeds`` (one per prompt)
        overrides ``params.seed`` per prompt, so prompts with different seeds share one call."""
        ...

    def launch(
        self, prompts: Sequence[Sequence[int]], n: int, prefix_len: int, params: SamplingParams
    ) -> Launch:
        """Sample ``n`` paths per prompt, each paused after ``prefix_len`` generated tokens."""
        ...

    def resume(self, launch: Launch, keep: Sequence[Sequence[int]]) -> list[list[ReasoningPath]]:
        """Continue the kept paths (``keep[p]`` = sample indices of prompt p) to completion.

        Returns, per prompt, the kept paths in the order given; the state of every other
        path is freed. A launch can be resumed once.
        """
        ...


def as_token_ids(prompt: Any, index: int) -> list[int]:
    """A prompt as a non-empty list of ints; errors name the prompt's index."""
    try:
        ids = [int(t) for t in prompt]
    except (TypeError, ValueError):
        raise TypeError(f"prompt {index} must be a sequence of token ids, got {type(prompt).__name__}"
                        " (use stoplib.prompts.build_prompt_ids)") from None
    if not ids:
        raise ValueError(f"prompt {index} is empty")
    return ids


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """End-of-sequence ids: the model's ``generation_config.eos_token_id`` and the tokenizer's."""
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


def keep_all(launch: Launch) -> list[list[int]]:
    """The ``keep`` argument that resumes every path of a launch."""
    return [[path.sample_index for path in group] for group in launch.paths]


def check_keep(launch: Launch, keep: Sequence[Sequence[int]]) -> list[list[int]]:
    """Validate a ``keep`` selection against a launch; returns it as lists of ints."""
    if len(keep) != len(launch.paths):
        raise ValueError(f"keep has {len(keep)} groups but the launch has {len(launch.paths)} prompts")
    out = []
    for p, (group, chosen) in enumerate(zip(launch.paths, keep)):
        chosen = [int(i) for i in chosen]
        valid = {path.sample_index for path in group}
        bad = [i for i in chosen if i not in valid]
        if bad:
            raise ValueError(f"keep[{p}] names unknown sample indices {bad}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"keep[{p}] repeats a sample index: {chosen}")
        out.append(chosen)
    return out
