"""What every generated task provides: problems by split, a prompt, and a step checker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..problems import Problem


@dataclass(frozen=True)
class StepCheck:
    """Step-level verdict on one generated path (see each task's ``check_path``).

    ``first_wrong_char`` is the character offset where the first wrong step's line starts;
    ``first_error_char`` where its deviation becomes visible in the text.
    """

    final_correct: bool
    answer: str | None
    first_wrong_step: int | None
    first_wrong_char: int | None
    first_error_char: int | None
    first_error_kind: str | None
    n_steps: int
    n_wrong_steps: int

    @property
    def has_wrong_step(self) -> bool:
        return self.first_wrong_step is not None

    @property
    def wrong_then_correct(self) -> bool:
        """The path had a wrong step and still ends with the correct answer."""
        return self.first_wrong_step is not None and self.final_correct


@dataclass(frozen=True)
class Task:
    """A generated problem source with its prompt and (optionally) a step checker.

    ``make_problems(n, seed, split)`` draws ``n`` problems of a split ("train" or "eval";
    ``None``: the task's default count); ``system`` and ``few_shot`` are the prompt's system
    turn and solved (question, solution) chat turns; ``check_path(problem, text)`` returns an
    object with the :class:`StepCheck` attributes; ``difficulty(problem)`` the per-problem knob.
    """

    name: str
    make_problems: Callable[[int | None, int, str], list[Problem]]
    description: str
    system: str | None = None
    few_shot: tuple[tuple[str, str], ...] = ()
    check_path: Callable[[Problem, str], object] | None = None
    difficulty: Callable[[Problem], float] | None = None
