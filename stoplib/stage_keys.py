"""What the data stages' store entries depend on: the content of the problems and prompts, the
model's identity, the engine and the stage's settings (never a path). A training's key adds its
configs to the labels' key (``stage_training``); a shard's adds the shard (``stage_runs``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .config import RunConfig
from .models import file_hash, model_identity
from .problems import Problem
from .stage_engine import load_tokenizer
from .stage_inputs import eval_problems, prompts_for, train_problems
from .store import config_hash

_INPUTS: dict[str, str] = {}


def inputs_hash(problems: Sequence[Problem], prompts: Sequence[Sequence[int]]) -> str:
    """Content hash of problems (question, answer, kind, ...) and their prompt token ids: it changes
    with the problem file, the prompt template, the few-shot examples and the tokenizer."""
    rows = [[p.to_dict(), list(ids)] for p, ids in zip(problems, prompts)]
    return config_hash(rows)


def _inputs(config: RunConfig, which: str) -> str:
    """``inputs_hash`` of the train or eval problems of ``config``, computed once per process."""
    source = config.train_problems if which == "train" else config.benchmark
    content = file_hash(source) if source and Path(source).is_file() else source  # an edited file recomputes
    memo = config_hash({"which": which, "config": config, "model": model_identity(config.model_path),
                        "source": content})
    if memo not in _INPUTS:
        problems = train_problems(config) if which == "train" else eval_problems(config)
        _INPUTS[memo] = inputs_hash(problems, prompts_for(problems, load_tokenizer(config), config))
    return _INPUTS[memo]


def labels_key(config: RunConfig) -> dict[str, Any]:
    """What the labels depend on: the model's content, the engine, the problems and prompts, the
    construction's settings (never a path)."""
    return {"model": model_identity(config.model_path), "engine": config.engine,
            "inputs": _inputs(config, "train"), "labels": config.labels}


def bank_key(config: RunConfig) -> dict[str, Any]:
    return {"model": model_identity(config.model_path), "engine": config.engine, "inputs": _inputs(config, "eval"),
            "n_paths": config.n_paths, "sampling": config.sampling}
