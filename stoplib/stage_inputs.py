"""The problems and prompts the stages run on: the training and evaluation problems of a run,
their prompt token ids, and the check that a prompt, the prefix and the [STOP] tokens fit the
model's context."""

from __future__ import annotations

from typing import Any, Sequence

from .config import RunConfig
from .models import context_of
from .problems import Problem
from .tasks import load_task_or_file


def eval_problems(config: RunConfig) -> list[Problem]:
    """Held-out evaluation problems (the "eval" split of a generated task, or a benchmark / file)."""
    return load_task_or_file(config.benchmark, "eval", config.n_eval_problems or None, config.seed)


def train_problems(config: RunConfig) -> list[Problem]:
    """Problems for dataset construction: the "train" split of a generated task, or a file."""
    if config.train_problems is None:
        raise ValueError(f"no training problems for model {config.model!r}: pass train_problems=<file> (the paper "
                         "uses AIME 1984-2023 and GPQA without Diamond), or a generated task such as 'arithmetic'")
    return load_task_or_file(config.train_problems, "train", config.n_train_problems or None, config.seed)


def prompts_for(problems: list[Problem], tokenizer: Any, config: RunConfig) -> list[list[int]]:
    return [config.prompt.ids(p, tokenizer) for p in problems]


def check_context(config: RunConfig, problems: Sequence[Problem], prompts: Sequence[Sequence[int]]) -> None:
    """The longest prompt, the prefix and the [STOP] tokens must fit the model's maximum context
    (read from the loaded model's config, so it holds for hub models too)."""
    from transformers import AutoConfig

    if not prompts:
        return
    context = context_of(AutoConfig.from_pretrained(config.model_path).to_dict())
    longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
    need = len(prompts[longest]) + config.prefix_len + config.stop.num_tokens
    if context is not None and need > context:
        raise ValueError(f"prefix_len={config.prefix_len}: the prompt of problem {problems[longest].id!r} "
                         f"({len(prompts[longest])} tokens) + the prefix + {config.stop.num_tokens} [STOP] tokens "
                         f"= {need} tokens exceed the maximum context of model {config.model!r} ({context} "
                         "tokens): lower prefix_len or use shorter problems")
