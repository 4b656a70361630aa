"""Run configuration: scale presets and ``resolve()``, the one place derived values come from.

Notebooks take literal parameters (scale, model, engine, seed, results_root, ...) and call
``resolve(...)`` to get a frozen ``RunConfig``. Stage configs derived from it are hashed by
the store, so a change of any setting gives a new run directory.

Scales:
- ``tiny``: CI smoke; the same code path with small numbers (seconds to a minute per notebook).
- ``small``: the default of ``make reproduce``: the built-in organism on 2 CPU cores.
- ``paper``: the paper's protocol (64 paths, prune at 2048 tokens to 8, T=0.6, top-p 0.95,
  top-k 40, max 16,384 new tokens) for real models on GPUs.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .engines.base import SamplingParams
from .labels import LabelConfig
from .stop import StopConfig
from .train import TrainConfig

SCALES = ("tiny", "small", "paper")
ENGINES = ("hf", "vllm")

TOY_MAX_NEW_TOKENS = 200  # organism paths are ~120 tokens

# The paper's sampling protocol (PAPER_SPEC section 0, item 7).
PAPER_SAMPLING = SamplingParams(temperature=0.6, top_p=0.95, top_k=40, max_new_tokens=16384, seed=0, logprobs=20)


@dataclass(frozen=True)
class ScalePreset:
    """How big each stage is at one scale."""

    n_paths: int  # N paths sampled per evaluation problem
    keep: int  # k paths kept after the check
    n_eval_problems: int  # held-out problems evaluated (0 = the whole benchmark)
    batch_size: int  # rows decoded together by the HF engine
    n_train_problems: int  # problems entering dataset construction (0 = all given)
    n_filter: int  # paths per problem for the difficulty filter (paper: 32)
    prefixes_per_problem: int | None  # prefixes labelled per kept problem (None: every filter path)
    k_rollouts: int  # Monte Carlo continuations per prefix (paper: 32)
    epochs: int
    lr: float
    train_batch: int
    grad_accum: int
    lora_r: int
    stop_seeds: int = 1  # STOP initializations compared in notebook 03 (the first is the main run)


PRESETS: dict[str, ScalePreset] = {
    "tiny": ScalePreset(n_paths=8, keep=2, n_eval_problems=8, batch_size=512, n_train_problems=12, n_filter=8,
                        prefixes_per_problem=None,
                        k_rollouts=4, epochs=2, lr=1e-3, train_batch=32, grad_accum=1, lora_r=8, stop_seeds=2),
    # small: many problems, few prefixes each: 32 paths of one problem repeat the same few prefixes
    # (336 problems x 32 paths gave 7,104 records but 1,159 distinct prefixes, and STOP memorized them).
    "small": ScalePreset(n_paths=64, keep=8, n_eval_problems=64, batch_size=4096, n_train_problems=1200, n_filter=16,
                         prefixes_per_problem=8, k_rollouts=8, epochs=20, lr=1e-3, train_batch=64, grad_accum=1,
                         lora_r=8, stop_seeds=3),
    # Paper: Table 12 (1.5B column; use r=256 for 7B/8B). Global batch 128 = 16 x 8.
    "paper": ScalePreset(n_paths=64, keep=8, n_eval_problems=0, batch_size=64, n_train_problems=0, n_filter=32,
                         prefixes_per_problem=None,
                         k_rollouts=32, epochs=15, lr=2e-5, train_batch=16, grad_accum=8, lora_r=128),
}


@dataclass(frozen=True)
class ModelDefaults:
    """Per-model defaults: where to load it, how long its paths are, where to prune."""

    path: str
    prefix_len: int
    max_new_tokens: int
    chat_kwargs: dict[str, Any] = field(default_factory=dict)


# The paper's models (PAPER_SPEC 7.2, 11): max generation length and chat settings.
MODEL_PRESETS: dict[str, dict[str, Any]] = {
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": {"max_new_tokens": 16384, "lora_r": 128},
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": {"max_new_tokens": 16384, "lora_r": 256},
    "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B": {"max_new_tokens": 32768, "lora_r": 256},  # "DS-Qwen-3-8B" (INFERRED id)
    "openai/gpt-oss-20b": {"max_new_tokens": 32768, "lora_r": 2048, "chat_kwargs": {"reasoning_effort": "medium"}},
}


def model_defaults(model: str, scale: str) -> ModelDefaults:
    """Defaults for ``model``: "toy" (the built-in organism) or a hub id / local path."""
    if model == "toy":
        from .toy.measure import DEFAULT_PREFIX_LEN
        from .toy.organism import organism_path

        return ModelDefaults(path=str(organism_path("small")), prefix_len=DEFAULT_PREFIX_LEN,
                             max_new_tokens=TOY_MAX_NEW_TOKENS)
    preset = MODEL_PRESETS.get(model, {})
    return ModelDefaults(path=model, prefix_len=2048,
                         max_new_tokens=preset.get("max_new_tokens", PAPER_SAMPLING.max_new_tokens),
                         chat_kwargs=dict(preset.get("chat_kwargs", {})))


@dataclass(frozen=True)
class RunConfig:
    """Everything a notebook or CLI run needs, resolved from a few literal parameters."""

    scale: str
    model: str
    model_path: str
    engine: str
    seed: int
    results_root: str
    figures_dir: str
    n_paths: int
    keep: int
    prefix_len: int
    n_eval_problems: int
    batch_size: int
    sampling: SamplingParams
    benchmark: str  # evaluation problems: "toy" or a benchmark name / file (stoplib.problems)
    train_problems: str | None  # dataset-construction problems: "toy" or a file; None = not set
    n_train_problems: int
    labels: LabelConfig
    stop: StopConfig
    train: TrainConfig
    chat_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    workers: int = 1  # processes for dataset construction; changes speed, never results
    stop_seeds: int = 1  # STOP initialization seeds compared in notebook 03 (seed, seed+1, ...)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve(
    scale: str = "small",
    model: str = "toy",
    engine: str = "hf",
    seed: int = 0,
    results_root: str = "results",
    figures_dir: str = "figures",
    **overrides: Any,
) -> RunConfig:
    """Resolve notebook parameters into a ``RunConfig``; ``overrides`` replace any field.

    Unknown scale, engine or override names raise ``ValueError`` naming the valid choices.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {SCALES}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    preset = PRESETS[scale]
    defaults = model_defaults(model, scale)
    sampling = PAPER_SAMPLING.with_(seed=seed, max_new_tokens=defaults.max_new_tokens)
    toy = model == "toy"
    labels = LabelConfig(
        n_filter=preset.n_filter, band=(round(4 * preset.n_filter / 32), round(28 * preset.n_filter / 32)),
        prefix_lens=(defaults.prefix_len,), k_rollouts=preset.k_rollouts, sampling=sampling,
        max_prefixes_per_problem=preset.prefixes_per_problem,
        batch_prefixes=max(1, preset.batch_size // preset.k_rollouts), model=model, seed=seed,
    )
    rank = MODEL_PRESETS.get(model, {}).get("lora_r", preset.lora_r) if scale == "paper" else preset.lora_r
    stop = StopConfig(lora_r=rank, lora_alpha=2 * rank, base_model=defaults.path)
    train = TrainConfig(lr=preset.lr, epochs=preset.epochs, batch_size=preset.train_batch,
                        grad_accum=preset.grad_accum, max_length=4096 if toy else 2048 + 1024, seed=seed)
    config = RunConfig(
        scale=scale, model=model, model_path=defaults.path, engine=engine, seed=seed,
        results_root=str(results_root), figures_dir=str(figures_dir), n_paths=preset.n_paths,
        keep=preset.keep, prefix_len=defaults.prefix_len, n_eval_problems=preset.n_eval_problems,
        batch_size=preset.batch_size, sampling=sampling, benchmark="toy" if toy else "aime_2024",
        train_problems="toy" if toy else None, n_train_problems=preset.n_train_problems,
        labels=labels, stop=stop, train=train, chat_kwargs=dict(defaults.chat_kwargs),
        workers=default_workers(model, engine, scale), stop_seeds=preset.stop_seeds,
    )
    unknown = set(overrides) - set(RunConfig.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}; valid: {sorted(RunConfig.__dataclass_fields__)}")
    return replace(config, **overrides)


def default_workers(model: str, engine: str, scale: str) -> int:
    """Label-construction processes: one single-threaded organism per core (at most 2) on CPU.

    A 0.3M-parameter model gains nothing from intra-op threads, so on a 2-core machine two
    processes sample about twice as fast as one. Real models use one process (one GPU, or
    torch's own threads). ``tiny`` stays in-process: spawning costs more than it saves.
    """
    if model != "toy" or engine != "hf" or scale == "tiny":
        return 1
    return max(1, min(2, os.cpu_count() or 1))


def repo_root() -> Path:
    """The repository root (the directory above the stoplib package)."""
    return Path(__file__).resolve().parent.parent
