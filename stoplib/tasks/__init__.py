"""Generated tasks: the built-in organism's chained arithmetic and arithmetic word problems.

A task is a problem source that needs no files: ``get_task(name).make_problems(n, seed, split)``.
Problem files and the paper's benchmarks are read by :func:`stoplib.problems.load_problems`;
:func:`load_task_or_file` takes either.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from .base import StepCheck, Task
from ..problems import Problem, load_problems


def _toy_family(spec_name: str, description: str) -> Callable[[], Task]:
    def factory() -> Task:
        from ..toy import task as toy

        spec = getattr(toy, spec_name)
        return Task(name=spec.name,
                    make_problems=lambda n, seed, split: toy.make_problems(n, seed=seed, split=split, spec=spec),
                    description=description, check_path=partial(toy.check_path, spec=spec),
                    difficulty=toy.difficulty)
    return factory


def _arithmetic() -> Task:
    from . import arithmetic

    return Task(name="arithmetic",
                make_problems=lambda n, seed, split: arithmetic.make_problems(n, seed=seed, split=split),
                description="multi-step arithmetic word problems with integer answers (stoplib.tasks.arithmetic)",
                few_shot=arithmetic.FEW_SHOT, check_path=arithmetic.check_path, difficulty=arithmetic.difficulty)


_FACTORIES = {
    "toy": _toy_family("DEFAULT_SPEC", "the organism's chained modular arithmetic (stoplib.toy.task)"),
    "toy-long": _toy_family("LONG_SPEC", "the same with 24 steps: the prefix is ~17% of a path (the long organism)"),
    "toy-mc": _toy_family("MC_SPEC", "the same as multiple choice, letters A-J (the long organism's second family)"),
    "arithmetic": _arithmetic,
}
TASK_NAMES = tuple(_FACTORIES)


def get_task(name: str) -> Task:
    """The generated task called ``name``; ValueError names the known ones."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown task {name!r}; generated tasks: {', '.join(TASK_NAMES)}")
    return _FACTORIES[name]()


def is_task(name: str | None) -> bool:
    return name in _FACTORIES


def load_task_or_file(source: str, split: str, n: int | None, seed: int) -> list[Problem]:
    """``n`` problems of ``split`` from a generated task, or the first ``n`` of a file / benchmark."""
    if is_task(source):
        return get_task(source).make_problems(n, seed, split)
    return load_problems(source, limit=n)


def task_of(problem: Problem) -> Task | None:
    """The generated task a problem comes from (by its source), or None."""
    return get_task(problem.source) if is_task(problem.source) else None


__all__ = ["StepCheck", "Task", "TASK_NAMES", "get_task", "is_task", "load_task_or_file", "task_of"]
