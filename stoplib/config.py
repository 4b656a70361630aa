"""Run configuration: ``resolve()``, the one place derived values come from.

Notebooks and the CLI take literal parameters (scale, model, engine, seed, results_root, ...)
and call ``resolve(...)`` to get a frozen, validated ``RunConfig``. The model's preset
(:mod:`stoplib.presets`) gives the sizes of every stage at the scale; keyword overrides replace
any of them, and the stage configs (labels, STOP, training, sampling, prompt) are derived from
the overridden values, so an override reaches every stage. Stage configs are hashed by the
store, so a change of any setting gives a new run directory.

Scales:
- ``tiny``: CI smoke; the same code path with small numbers (seconds to a minute per notebook).
- ``small``: the default of ``make reproduce``: the built-in organism on 2 CPU cores.
- ``paper``: the paper's protocol (64 paths, prune at 2048 tokens to 8, T=0.6, top-p 0.95,
  top-k 40, max 16,384 new tokens) for real models on GPUs.
"""

from __future__ import annotations

import numbers
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Sequence

from . import params
from .engines.base import SamplingParams
from .presets import PRESETS, SCALES, Sizes, get_preset
from .prompts import PromptConfig
from .stage_configs import LabelConfig, StopConfig, TrainConfig

ENGINES = ("hf", "vllm")

# The paper's sampling protocol (§4.1): T = 0.6, top-p 0.95, top-k 40.
PAPER_SAMPLING = SamplingParams(temperature=0.6, top_p=0.95, top_k=40, max_new_tokens=16384, seed=0, logprobs=20)


@dataclass(frozen=True)
class RunConfig:
    """Everything a notebook or CLI run needs, resolved from a few literal parameters."""

    scale: str
    model: str
    model_path: str
    engine: str
    seed: int
    results_root: str
    figures_dir: str  # figures_dir/<run_name>: every model's figures in a folder of their own
    n_paths: int
    keep: int
    prefix_len: int
    n_eval_problems: int
    batch_size: int
    sampling: SamplingParams
    benchmark: str  # evaluation problems: a generated task ("toy", "arithmetic") or a benchmark name / file
    train_problems: str | None  # dataset-construction problems: a generated task or a file; None = not set
    n_train_problems: int
    labels: LabelConfig
    stop: StopConfig
    train: TrainConfig
    prompt: PromptConfig = field(default_factory=PromptConfig)
    workers: int = 1  # processes for dataset construction and training; changes speed, not results (the
    # verifier's data parallel training: up to float rounding)
    stop_seeds: int = 1  # STOP initialization seeds compared in notebook 03 (seed, seed+1, ...)
    verifier_epochs: int = 1  # epochs of the Type II text verifier
    threads: int | None = None  # torch threads for this model on CPU (None: torch's default)
    attn_implementation: str | None = None  # HF engine attention (None: transformers' default)
    tensor_parallel_size: int = 1  # vLLM: GPUs per model (its tensor_parallel_size); hf: 1
    pipeline_parallel_size: int = 1  # vLLM: pipeline stages (its pipeline_parallel_size); hf: 1

    @property
    def run_name(self) -> str:
        """Names this model's runs in ``results/latest/`` and under the figures directory: the
        model preset (or a file-system-safe form of its id/path), plus the engine if not "hf"."""
        return run_name(self.model, self.engine)

    @property
    def chat_kwargs(self) -> dict[str, Any]:
        return dict(self.prompt.chat_kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Keyword overrides of ``resolve`` that feed the derived stage configs (besides RunConfig fields).
KNOBS = {f.name for f in fields(Sizes)} | {"max_new_tokens"}


def resolve(
    scale: str = "small",
    model: str = "toy",
    engine: str = "hf",
    seed: int = 0,
    results_root: str = "results",
    figures_dir: str = "figures",
    **overrides: Any,
) -> RunConfig:
    """Resolve parameters into a validated ``RunConfig``; ``overrides`` replace any size of the
    model's preset (``n_paths``, ``keep``, ``prefix_len``, ``max_new_tokens``, ``k_rollouts``,
    ``epochs``, ``lr``, ``lora_r``, ...) or any ``RunConfig`` field (``benchmark``,
    ``train_problems``, ``workers``, or a whole ``labels`` / ``stop`` / ``train`` / ``sampling`` /
    ``prompt``). Bad names and values raise ``ValueError`` naming the parameter and what is valid.

    The model's weights are made available here: for a GGUF preset the first call converts
    them once into ``results_root/models/`` (about a minute).
    """
    for name in ("benchmark", "train_problems"):  # notebooks pass "" for "the preset's default"
        if overrides.get(name, None) == "":
            del overrides[name]
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose one of {SCALES}")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    params.text("model", model)
    results_root, figures_dir = params.path_text("results_root", results_root), params.path_text("figures_dir", figures_dir)
    field_names = {f.name for f in fields(RunConfig)}
    unknown = set(overrides) - field_names - KNOBS
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}; valid: {sorted(field_names | KNOBS)}")
    for name, kind in OVERRIDE_TYPES.items():
        if name in overrides:
            params.instance(name, overrides[name], kind)
    preset = get_preset(model)
    sizes = replace(preset.sizes_for(scale), **{k: v for k, v in overrides.items() if k in KNOBS - {"max_new_tokens"}})
    _check_sizes(sizes)
    max_new = overrides.get("max_new_tokens", sizes.max_new_tokens)
    _check_int("max_new_tokens", max_new, 2)
    if sizes.keep > sizes.n_paths:
        raise ValueError(f"keep={sizes.keep} must be <= n_paths={sizes.n_paths}")
    if sizes.prefix_len >= max_new:
        raise ValueError(f"prefix_len={sizes.prefix_len} must be below max_new_tokens={max_new} (paths are cut there)")

    results_root, figures_dir = project_path(results_root), project_path(figures_dir)
    from .models import materialize

    model_path = str(materialize(preset.weights, results_root))
    labels_model = model_name(model, model_path)
    sampling = overrides.get("sampling") or PAPER_SAMPLING.with_(seed=seed, max_new_tokens=max_new)
    band = (round(4 * sizes.n_filter / 32), round(28 * sizes.n_filter / 32))
    labels = LabelConfig(
        n_filter=sizes.n_filter, band=band, prefix_lens=(sizes.prefix_len,), k_rollouts=sizes.k_rollouts,
        sampling=sampling, max_prefixes_per_problem=sizes.prefixes_per_problem,
        batch_prefixes=max(1, engine_batch(sizes.batch_size, engine) // sizes.k_rollouts), model=labels_model,
        seed=seed,
    )
    stop = StopConfig(lora_r=sizes.lora_r, lora_alpha=2 * sizes.lora_r, base_model=model_path)
    train = TrainConfig(lr=sizes.lr, epochs=sizes.epochs, batch_size=sizes.train_batch, grad_accum=sizes.grad_accum,
                        max_length=max(4096, sizes.prefix_len + 2048), seed=seed)
    prompt = PromptConfig.for_source(preset.eval_problems, chat_kwargs=preset.chat_kwargs)
    config = RunConfig(
        scale=scale, model=model, model_path=model_path, engine=engine, seed=seed,
        results_root=str(results_root), figures_dir=str(Path(figures_dir) / run_name(model, engine)),
        n_paths=sizes.n_paths, keep=sizes.keep,
        prefix_len=sizes.prefix_len, n_eval_problems=sizes.n_eval_problems, batch_size=sizes.batch_size,
        sampling=sampling, benchmark=preset.eval_problems, train_problems=preset.train_problems,
        n_train_problems=sizes.n_train_problems, labels=labels, stop=stop, train=train, prompt=prompt,
        workers=default_workers(preset.cpu_workers, engine, scale), stop_seeds=sizes.stop_seeds,
        verifier_epochs=sizes.verifier_epochs or sizes.epochs, threads=preset.threads,
        attn_implementation=preset.attn_implementation,
    )
    config = replace(config, **{k: v for k, v in overrides.items() if k in field_names})
    if "benchmark" in overrides and "prompt" not in overrides:  # the prompt follows the evaluation problems
        config = replace(config, prompt=PromptConfig.for_source(config.benchmark, chat_kwargs=preset.chat_kwargs))
    check_config(config)
    return config


#: Overrides of whole values: the type each must have.
OVERRIDE_TYPES: dict[str, type] = {
    "sampling": SamplingParams, "labels": LabelConfig, "stop": StopConfig, "train": TrainConfig,
    "prompt": PromptConfig, "model_path": str,
}


def _check_sizes(sizes: Sizes) -> None:
    """Types and ranges of the preset's sizes after overrides."""
    for name in ("n_paths", "keep", "prefix_len", "batch_size", "n_filter", "k_rollouts", "epochs", "train_batch",
                 "grad_accum", "lora_r", "stop_seeds"):
        _check_int(name, getattr(sizes, name), 1)
    for name in ("n_eval_problems", "n_train_problems"):
        _check_int(name, getattr(sizes, name), 0)
    params.optional_int("prefixes_per_problem", sizes.prefixes_per_problem)
    params.optional_int("verifier_epochs", sizes.verifier_epochs)
    params.number("lr", sizes.lr, 0, 1)


def check_config(config: RunConfig) -> None:
    """Every field of a resolved config and their combinations; errors name the parameter, the
    value and what is valid. The model's maximum context is checked when its config is on disk
    (else when the model is loaded: :func:`stoplib.stages.check_context`)."""
    for name in ("n_paths", "keep", "prefix_len", "batch_size", "workers", "stop_seeds", "verifier_epochs",
                 "tensor_parallel_size", "pipeline_parallel_size"):
        _check_int(name, getattr(config, name), 1)
    for name in ("tensor_parallel_size", "pipeline_parallel_size"):
        if getattr(config, name) > 1 and config.engine != "vllm":
            raise ValueError(f"{name}={getattr(config, name)} needs engine='vllm' (engine {config.engine!r} runs a "
                             "model on one device); to use more devices with it, shard the problems (--shard i/n)")
    for name in ("n_eval_problems", "n_train_problems"):
        _check_int(name, getattr(config, name), 0)
    params.text("benchmark", config.benchmark)
    params.text("train_problems", config.train_problems, optional=True)
    params.text("model_path", config.model_path)
    params.optional_int("threads", config.threads)
    params.text("attn_implementation", config.attn_implementation, optional=True)
    for name, kind in OVERRIDE_TYPES.items():
        params.instance(name, getattr(config, name), kind)
    if config.keep > config.n_paths:
        raise ValueError(f"keep={config.keep} must be <= n_paths={config.n_paths}")
    max_new = config.sampling.max_new_tokens
    if config.prefix_len >= max_new:
        raise ValueError(f"prefix_len={config.prefix_len} must be below max_new_tokens={max_new} (paths are cut there)")
    for length in config.labels.prefix_lens:
        if length >= config.labels.sampling.max_new_tokens:
            raise ValueError(f"labels.prefix_lens={config.labels.prefix_lens} must each be below the labels' "
                             f"max_new_tokens={config.labels.sampling.max_new_tokens}")
    from .models import max_context

    context = max_context(config.model_path)
    if context is not None and config.prefix_len >= context:
        raise ValueError(f"prefix_len={config.prefix_len} must be below the maximum context of model "
                         f"{config.model!r} ({context} tokens, with the prompt): lower prefix_len")


def with_label_lengths(config: RunConfig, lengths: Sequence[int], *, spread: bool = False) -> RunConfig:
    """``config`` with its labels cut at every prefix length in ``lengths``, so that a STOP trained
    on them ranks prefixes of each length (the run's own STOP sees one length, the paper's
    protocol). Each length gets the run's number of labelled prefixes per problem, so the
    construction costs about the run's times the number of lengths. ``spread=True`` keeps the
    run's cost instead: the run's number per problem divided over the lengths (at least 1 each;
    unlimited stays unlimited), each length taking the next paths
    (:func:`labels.prefix_paths`). On the long organism that left too few labels per length: a STOP
    trained on one prefix per problem at each of 7 lengths ranked at random at every length
    (within-problem AUROC 0.49-0.59). The store keys follow the labels."""
    items = [] if isinstance(lengths, (str, bytes)) or not hasattr(lengths, "__iter__") else list(lengths)
    if not items or not all(isinstance(x, numbers.Integral) and not isinstance(x, bool) and x >= 1 for x in items):
        raise ValueError(f"lengths={lengths!r} must be a non-empty list of positive integers (prefix lengths in tokens)")
    wanted = sorted({int(x) for x in items})
    cap = config.labels.max_prefixes_per_problem
    if spread and cap is not None:
        cap = max(1, cap // len(wanted))
    derived = replace(config, labels=replace(config.labels, prefix_lens=tuple(wanted), max_prefixes_per_problem=cap))
    check_config(derived)
    return derived


#: Sequences submitted per engine call by dataset construction and the bank with vLLM, which
#: schedules them itself (the HF engine decodes ``batch_size`` rows at a time).
VLLM_SUBMIT = 4096


def engine_batch(batch_size: int, engine: str) -> int:
    """Sequences per engine call: the HF engine's batch, or a large submission for vLLM."""
    return batch_size if engine == "hf" else max(batch_size, VLLM_SUBMIT)


def project_path(path: str | Path) -> str:
    """A relative results / figures path anchored at the repository, so that a notebook opened in
    JupyterLab (whose kernel starts in ``notebooks/``) uses the same store as ``make reproduce``:
    taken from ``$STOPLIB_ROOT`` when it is set (``make lab`` sets it), from the repository root
    when the working directory is the repository's ``notebooks/``, else from the working directory."""
    if Path(path).is_absolute():
        return str(path)
    root = os.environ.get("STOPLIB_ROOT")
    if root:
        return str(Path(root) / path)
    if Path.cwd().resolve() == repo_root() / "notebooks":
        return str(repo_root() / path)
    return str(path)


def model_name(model: str, model_path: str) -> str:
    """How the labels name the model (``LabelConfig.model``: in every label record and in the
    labels' store key): a preset name or a hub id as given; a model given as a local directory by
    its content, ``"sha256:<hash>"`` of :func:`stoplib.models.model_identity`, never by its path,
    so that a copy of the directory elsewhere names (and finds) the same labels."""
    if model in PRESETS or not Path(model_path).is_dir():
        return model
    from .models import model_identity

    return f"sha256:{model_identity(model_path)['sha256']}"


def run_name(model: str, engine: str = "hf") -> str:
    """See :attr:`RunConfig.run_name`."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "--", model.strip("/")).strip(".-") or "model"
    return slug if engine == "hf" else f"{slug}-{engine}"


def _check_int(name: str, value: Any, low: int) -> None:
    params.positive_int(name, value, low)


def default_workers(cpu_workers: int, engine: str, scale: str) -> int:
    """Processes for label construction and training: the preset's ``cpu_workers`` (one
    single-threaded model per core, at most the cores there are) with the HF engine off ``tiny``
    (spawning costs more than it saves there); 1 otherwise (one GPU, or torch's own threads)."""
    if cpu_workers <= 1 or engine != "hf" or scale == "tiny":
        return 1
    return max(1, min(cpu_workers, os.cpu_count() or 1))


def repo_root() -> Path:
    """The repository root (the directory above the stoplib package)."""
    return Path(__file__).resolve().parent.parent
