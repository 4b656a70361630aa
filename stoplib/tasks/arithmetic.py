"""Multi-step arithmetic word problems with integer answers, for small pretrained chat models.

A problem is a short story whose quantity changes a few times::

    Mia has 3 shells. Then Mia gets 4 more. Then Mia gets 2 more. How many shells does Mia have now?

and a solution restates the start, then writes one line per event with its operation, carrying
the running value, then the answer::

    Mia has 3 shells.
    Then Mia gets 4 more: 3 + 4 = 7.
    Then Mia gets 2 more: 7 + 2 = 9.
    The answer is 9.

Restating each event before computing it is what makes SmolLM2-135M-Instruct copy the right
numbers (with bare equations it copied a wrong operand in most paths).

The prompt shows a few solved problems as earlier chat turns (:data:`FEW_SHOT`; they come from
a split the evaluation never uses), which is what makes a 135M-parameter instruct model follow
the format: with the paper's zero-shot ``\\boxed{}`` instruction SmolLM2-135M-Instruct writes
no box at all in most paths. The answer is read from the last "answer is N" (the extraction
rule of problem kind ``"integer"`` in :mod:`stoplib.grading`).

Errors are real, not staged: the model copies a wrong number from the story, applies the wrong
operation, miscounts, or adds a step, and every later line carries the error forward.
:func:`check_path` finds the first wrong step of a path, so the testbed properties of notebook
00 (where failures begin, how often they are undone) and the attention analysis of notebook 04
can be measured on a real model too. The difficulty knob is the number of operations.

Train and evaluation problems never share a story: the split is a hash of the question text.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..problems import Problem
from .base import StepCheck

SOURCE = "arithmetic"
SPLITS = ("train", "eval", "demo")
NAMES = ("Ann", "Ben", "Mia", "Tom", "Zoe", "Sam", "Lily", "Max", "Eva", "Leo", "Nina", "Omar")
ITEMS = ("apples", "shells", "stamps", "cards", "eggs", "coins", "pens", "books", "marbles", "stickers")
GAIN = ("gets {v} more", "finds {v} more", "buys {v} more")
LOSS = ("gives away {v}", "loses {v}", "sells {v}")


@dataclass(frozen=True)
class ArithmeticSpec:
    """The task family: how many operations, how large the numbers, how often a loss, how many
    ways to say it. The defaults are tuned for SmolLM2-135M-Instruct at T = 0.6 (see the README's
    testbed table): two or three additions of small numbers, one phrasing."""

    min_ops: int = 2
    max_ops: int = 3
    max_start: int = 5
    max_operand: int = 4
    loss_rate: float = 0.0  # probability that an operation takes away (never below zero)
    phrasings: int = 1  # how many of the GAIN / LOSS phrasings are used
    eval_fraction: float = 0.25
    demo_fraction: float = 0.02  # stories reserved for the few-shot demonstrations

    def __post_init__(self) -> None:
        if not 1 <= self.min_ops <= self.max_ops:
            raise ValueError(f"need 1 <= min_ops <= max_ops, got {self.min_ops}, {self.max_ops}")
        if self.max_start < 2 or self.max_operand < 1:
            raise ValueError("need max_start >= 2 and max_operand >= 1")
        if not 0 <= self.loss_rate <= 1:
            raise ValueError(f"loss_rate must be in [0, 1], got {self.loss_rate}")
        if not 1 <= self.phrasings <= len(GAIN):
            raise ValueError(f"phrasings must be in 1..{len(GAIN)}, got {self.phrasings}")


DEFAULT_SPEC = ArithmeticSpec()


@dataclass(frozen=True)
class Story:
    """One problem: a start value and the operations applied to it."""

    name: str
    item: str
    start: int
    ops: tuple[tuple[str, int], ...]  # ("+" | "-", operand)
    verbs: tuple[int, ...]  # which phrasing of a gain / loss each operation uses

    @property
    def values(self) -> list[int]:
        """The running value after each operation."""
        out, x = [], self.start
        for sign, v in self.ops:
            x = x + v if sign == "+" else x - v
            out.append(x)
        return out

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def question(self) -> str:
        parts = [f"{self.name} has {self.start} {self.item}."]
        for (sign, v), verb in zip(self.ops, self.verbs):
            phrase = (GAIN if sign == "+" else LOSS)[verb].format(v=v)
            parts.append(f"Then {self.name} {phrase}.")
        parts.append(f"How many {self.item} does {self.name} have now?")
        return " ".join(parts)

    def solution(self) -> str:
        """The worked solution in the format the prompt teaches."""
        lines, x = [f"{self.name} has {self.start} {self.item}."], self.start
        for (sign, v), verb, y in zip(self.ops, self.verbs, self.values):
            phrase = (GAIN if sign == "+" else LOSS)[verb].format(v=v)
            lines.append(f"Then {self.name} {phrase}: {x} {sign} {v} = {y}.")
            x = y
        lines.append(f"The answer is {self.answer}.")
        return "\n".join(lines)


def split_of(question: str, spec: ArithmeticSpec = DEFAULT_SPEC) -> str:
    """"demo", "eval" or "train", from a hash of the question text (stable across machines)."""
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) / 16**8
    if h < spec.demo_fraction:
        return "demo"
    return "eval" if h < spec.demo_fraction + spec.eval_fraction else "train"


def _story(rng: np.random.Generator, spec: ArithmeticSpec) -> Story:
    n_ops = int(rng.integers(spec.min_ops, spec.max_ops + 1))
    x = int(rng.integers(2, spec.max_start + 1))
    start, ops, verbs = x, [], []
    for _ in range(n_ops):
        v = int(rng.integers(1, spec.max_operand + 1))
        sign = "-" if rng.random() < spec.loss_rate and v <= x else "+"
        x = x + v if sign == "+" else x - v
        ops.append((sign, v))
        verbs.append(int(rng.integers(spec.phrasings)))
    return Story(str(rng.choice(NAMES)), str(rng.choice(ITEMS)), start, tuple(ops), tuple(verbs))


def stories(n: int, seed: int = 0, split: str = "eval", spec: ArithmeticSpec = DEFAULT_SPEC) -> list[Story]:
    """``n`` distinct stories of a split, drawn deterministically from ``seed``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    stream = int.from_bytes(hashlib.sha256(f"{seed}:{split}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(stream)
    out: dict[str, Story] = {}
    for _ in range(200 * n + 1000):
        if len(out) == n:
            break
        story = _story(rng, spec)
        if split_of(story.question, spec) == split:
            out.setdefault(story.question, story)
    if len(out) < n:
        raise ValueError(f"could not draw {n} distinct {split} problems from {spec}")
    return list(out.values())


def to_problem(story: Story, split: str) -> Problem:
    """A :class:`~stoplib.problems.Problem` of kind "integer"."""
    digest = hashlib.sha256(story.question.encode()).hexdigest()[:10]
    return Problem(id=f"arith-{digest}", prompt=story.question, answer=str(story.answer), kind="integer",
                   source=SOURCE, meta={"split": split, "n_ops": len(story.ops), "difficulty": len(story.ops),
                                        "start": story.start, "ops": [list(op) for op in story.ops]})


def make_problems(n: int | None, seed: int = 0, split: str = "eval",
                  spec: ArithmeticSpec = DEFAULT_SPEC) -> list[Problem]:
    """``n`` problems of a split (``None``: 1,000)."""
    return [to_problem(s, split) for s in stories(1000 if n is None else n, seed, split, spec)]


def _demo_stories() -> list[Story]:
    """Three demonstrations (two with 3 operations, one with 2), from the reserved "demo" split."""
    pool = stories(12, seed=0, split="demo")
    threes = [s for s in pool if len(s.ops) == 3]
    return [threes[0], next(s for s in pool if len(s.ops) == 2), threes[1]]


#: The few-shot demonstrations shown as earlier chat turns: (question, solution) pairs.
FEW_SHOT: tuple[tuple[str, str], ...] = tuple((s.question, s.solution()) for s in _demo_stories())


# ---------------------------------------------------------------------------------------------
# Checking a generated path.

_START_RE = re.compile(r"\s*\S.*?\bhas\s+(\d+)\b.*")
_EQUATION_RE = re.compile(r"(-?\d+)\s*([+\-])\s*(\d+)\s*=\s*(-?\d+)")
_ANSWER_RE = re.compile(r"\s*the answer is\s*:?\s*\**\s*(-?\d+)\s*\**\s*\.?\s*", re.IGNORECASE)


def story_of(problem: Problem) -> tuple[int, list[tuple[str, int]]]:
    """(start value, operations) of a problem made by this module."""
    try:
        return int(problem.meta["start"]), [(str(s), int(v)) for s, v in problem.meta["ops"]]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"problem {problem.id} is not an arithmetic-task problem (no start/ops in meta)") from None


def check_path(problem: Problem, text: str) -> StepCheck:
    """Step-level verdict on a generated solution (special tokens removed).

    Step 0 restates the start ("Mia has 3 shells."); step i (1..k) must hold an equation
    ``x s v = y`` where ``x`` is the previous step's written value (the start for step 1),
    ``s v`` is the story's i-th operation and ``y = x s v``; step k+1 is "The answer is N." with
    N the last written value, and nothing may follow it. The first step that breaks a rule is
    the first wrong step: a wrong written result ("value"), a wrong number or sign copied from
    the story or a broken carry ("copy"), a line that is not the expected step or an extra /
    missing step ("format"), a wrong or missing answer ("answer"). ``first_error_char`` is where
    the deviation becomes visible in the text.
    """
    start, ops = story_of(problem)
    truth = start
    for sign, v in ops:
        truth = truth + v if sign == "+" else truth - v
    from ..grading import extract_answer

    answer = extract_answer(text, "integer")
    final_correct = answer is not None and int(answer) == truth
    lines = text.split("\n")
    lines += [""] * max(0, len(ops) + 2 - len(lines))
    offsets = [sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))]
    wrong: list[tuple[int, int, int, str]] = []  # (step, line start, error char, kind)
    n_steps = 0
    m = _START_RE.fullmatch(lines[0])
    if not m:
        wrong.append((0, 0, 0, "format"))
        prev = start
    else:
        n_steps += 1
        prev = int(m[1])
        if prev != start:
            wrong.append((0, 0, m.start(1), "copy"))
    for i, (sign, v) in enumerate(ops, start=1):
        line, begin = lines[i], offsets[i]
        m = _EQUATION_RE.search(line)
        if not m:
            wrong.append((i, begin, begin, "answer" if _ANSWER_RE.fullmatch(line) else "format"))
            break  # later lines cannot be aligned with the story's operations
        n_steps += 1
        x, s, w, y = int(m[1]), m[2], int(m[3]), int(m[4])
        computed = x + w if s == "+" else x - w
        if x != prev:
            wrong.append((i, begin, begin + m.start(1), "copy"))
        elif (s, w) != (sign, v):
            wrong.append((i, begin, begin + (m.start(2) if s != sign else m.start(3)), "copy"))
        elif y != computed:
            wrong.append((i, begin, begin + m.start(4), "value"))
        prev = y
    else:
        k = len(ops) + 1
        m = _ANSWER_RE.fullmatch(lines[k])
        if not m:
            wrong.append((k, offsets[k], offsets[k], "format" if _EQUATION_RE.search(lines[k]) else "answer"))
        elif int(m[1]) != prev:
            wrong.append((k, offsets[k], offsets[k] + m.start(1), "answer"))
        if "\n".join(lines[k + 1:]).strip():
            wrong.append((k + 1, offsets[k + 1], offsets[k + 1], "format"))
    first = wrong[0] if wrong else None
    return StepCheck(
        final_correct=final_correct, answer=answer,
        first_wrong_step=first[0] if first else None, first_wrong_char=first[1] if first else None,
        first_error_char=first[2] if first else None, first_error_kind=first[3] if first else None,
        n_steps=n_steps, n_wrong_steps=len(wrong),
    )


def difficulty(problem: Problem) -> float:
    """The number of operations of a problem."""
    return float(problem.meta.get("n_ops", len(story_of(problem)[1])))


def pass_counts_by_ops(problems: Sequence[Problem], correct: np.ndarray) -> dict[int, float]:
    """Mean pass@1 per number of operations (``correct``: (P, N) bool)."""
    out: dict[int, list[float]] = {}
    for problem, row in zip(problems, correct):
        out.setdefault(int(difficulty(problem)), []).append(float(np.mean(row)))
    return {k: float(np.mean(v)) for k, v in sorted(out.items())}
