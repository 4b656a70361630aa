"""The toy reasoning task: a chained modular-arithmetic computation with plausible early slips.

A question names a start value and two operations, e.g. ``a8 f*7+3 g-4``: ``a = 8``, a "hard"
operation ``f(x) = (7x + 3) mod 10`` and an "easy" one ``g(x) = (x - 4) mod 10``. The chain of
thought applies ``f`` for the first ``n_hard`` steps and ``g`` for the rest, one line per step,
each line restating its operand, and ends in ``\\boxed{answer}``::

    b:8*7+3=9
    c:9*7+3=6
    d:6-4=2
    ...
    n:5-4=1
    \\boxed{1}

Each step depends on the previous result, so an error is carried forward and the final answer is
wrong unless errors cancel. Demonstrations (:func:`solution_text`) contain a plausible slip at each
hard step ("forgot the +b": writes ``a*x mod 10``) with probability ``slip_rate * b``, carried
forward consistently: ``b`` is the per-problem difficulty knob.

Variants of the family (:class:`ToyTaskSpec`): the shipped organism's task is
:data:`DEFAULT_SPEC` (two hard steps, a late slip after the prefix); :data:`LONG_SPEC` has 24
steps, so a prefix of 36 tokens is ~17% of a path, as in the paper; :data:`MC_SPEC` asks the
same computation as a multiple-choice question (the ten values under the letters A-J, in an
order of its own for every question) and the path ends with the letter. Why the family looks as
it does (slips that never cancel, the late slip) is told in ``docs/organism.md``.

Train and eval problems never share a question: the split is a hash of the question string.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Sequence

import numpy as np

from stoplib.problems import Problem

SPLITS = ("train", "eval")
#: Default prefix length in generated tokens (= characters): the end of step ``e`` (the two hard
#: steps and two easy ones), 36 of the 118 tokens of every well-formed path (31%).
DEFAULT_PREFIX_LEN = 36
STEP_LETTERS = "bcdefghijklmnopqrstuvwxyz"
CHOICE_LETTERS = "ABCDEFGHIJ"
SOURCE = "toy"


@dataclass(frozen=True)
class ToyTaskSpec:
    """Parameters of the task family. ``ToyTaskSpec()`` is design D3; the shipped organism's task
    is :data:`DEFAULT_SPEC` (design D4, with the late slip)."""

    modulus: int = 10
    n_steps: int = 13
    n_hard: int = 2
    a_values: tuple[int, ...] = (3, 7)
    b_values: tuple[int, ...] = (1, 2, 3, 4, 6, 7, 8, 9)
    d_values: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9)
    slip_rate: float = 0.05  # slip probability per hard step = slip_rate * b
    eval_fraction: float = 0.2
    #: Design D4: a "sign confusion" slip at one easy step after the prefix (writes x -+ d instead
    #: of x +- d) with probability ``late_slip_rate * d``; 0 (the default) turns it off (D3).
    late_slip_rate: float = 0.0
    late_slip_step: int = 6  # step index of the late slip (6: step "h", starts at char 52)
    #: Multiple choice: the question lists every value under a letter (A-J, a per-question order)
    #: and the path ends with ``\\boxed{<letter>}``; graded as kind "multiple_choice".
    multiple_choice: bool = False
    name: str = "toy"  # the task's name: problem ids, ``Problem.source`` and the task registry

    def __post_init__(self) -> None:
        if not 1 <= self.n_hard <= self.n_steps <= len(STEP_LETTERS):
            raise ValueError(f"need 1 <= n_hard <= n_steps <= {len(STEP_LETTERS)}")
        if self.modulus > 10:
            raise ValueError("values must be single digits: modulus <= 10")
        if max(self.b_values) * self.slip_rate > 1:
            raise ValueError("slip_rate * b must be a probability")
        if not 0 < self.eval_fraction < 1:
            raise ValueError("eval_fraction must be in (0, 1)")
        if self.late_slip_rate:
            if max(self.d_values) * self.late_slip_rate > 1:
                raise ValueError("late_slip_rate * d must be a probability")
            if not self.n_hard <= self.late_slip_step < self.n_steps:
                raise ValueError("late_slip_step must be an easy step")
            if any((2 * d) % self.modulus == 0 for d in self.d_values):
                raise ValueError("a sign-confusion slip is invisible when 2d = 0 mod m: drop such d")
        if self.multiple_choice and self.modulus > len(CHOICE_LETTERS):
            raise ValueError(f"multiple choice names every value with a letter: modulus <= {len(CHOICE_LETTERS)}")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", self.name):
            raise ValueError(f"task name {self.name!r}: lower-case letters, digits and '-'")

    def slip_prob(self, b: int) -> float:
        """Probability of a slip at each hard step for knob ``b``."""
        return self.slip_rate * b

    def late_slip_prob(self, d: int) -> float:
        """Probability of the late sign-confusion slip for easy operand ``d`` (0 when off)."""
        return self.late_slip_rate * d


#: Design D3: two hard steps, no late slip. Every failure is decided inside the L=36 prefix, so
#: Monte Carlo soft labels are all 0 or 1 (the earlier organism; kept for comparison).
D3_SPEC = ToyTaskSpec()
#: The probe's design D2, kept for comparison (its double slips can cancel).
D2_SPEC = ToyTaskSpec(n_hard=3, a_values=(3, 7, 9), b_values=tuple(range(1, 10)))
#: Design D4 (the default): D3 plus a late "sign confusion" slip at step h (index 6, after the
#: L=36 prefix) with probability ``0.05 * d``; ``d = 5`` is dropped (x+5 = x-5 mod 10 would hide
#: the slip). Paths with a correct prefix can still fail, so Monte Carlo soft labels are soft.
D4_SPEC = ToyTaskSpec(d_values=(1, 2, 3, 4, 6, 7, 8, 9), late_slip_rate=0.05)
#: The shipped organism's task.
DEFAULT_SPEC = D4_SPEC
#: D4 with 24 steps (2 hard, 22 easy): paths of ~206 tokens, so the L = 36 prefix is ~17% of a
#: path (the paper's prefix, 2,048 of ~12k tokens, is ~17%); the "long" organism's math task.
LONG_SPEC = ToyTaskSpec(n_steps=24, d_values=D4_SPEC.d_values, late_slip_rate=0.05, name="toy-long")
#: D4 as a multiple-choice question (letters A-J): the "long" organism's second task family,
#: on which STOP is applied without labels (out-of-domain transfer, paper Table 8).
MC_SPEC = ToyTaskSpec(d_values=D4_SPEC.d_values, late_slip_rate=0.05, multiple_choice=True, name="toy-mc")


@dataclass(frozen=True)
class ToyQuestion:
    """The parameters of one question."""

    v0: int
    a: int
    b: int
    sign: str  # "+" or "-"
    d: int
    order: str = ""  # multiple choice: the value under each letter A, B, ... ("" for a free answer)

    @property
    def text(self) -> str:
        base = f"a{self.v0} f*{self.a}+{self.b} g{self.sign}{self.d}"
        return base + "".join(f" {letter}{value}" for letter, value in zip(CHOICE_LETTERS, self.order))

    def letter_of(self, value: int) -> str:
        """The letter under which a multiple-choice question lists ``value``."""
        return CHOICE_LETTERS[self.order.index(str(value))]


_QUESTION_RE = re.compile(r"a(\d) f\*(\d)\+(\d) g([+-])(\d)((?: [A-J]\d)*)")


def parse_question(text: str) -> ToyQuestion:
    """Inverse of :attr:`ToyQuestion.text`; raises ValueError on anything else."""
    m = _QUESTION_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a toy question: {text!r}")
    options = m[6].split()
    if [o[0] for o in options] != list(CHOICE_LETTERS[: len(options)]) or len({o[1] for o in options}) != len(options):
        raise ValueError(f"not a toy question: {text!r} (options must be A, B, ... with distinct values)")
    return ToyQuestion(int(m[1]), int(m[2]), int(m[3]), m[4], int(m[5]), "".join(o[1] for o in options))


def choice_order(q: ToyQuestion, spec: ToyTaskSpec) -> str:
    """The values under the letters of a multiple-choice question: a permutation of
    0..modulus-1 drawn from a hash of the question (the same on every machine)."""
    seed = int(hashlib.sha256(f"{q.v0}{q.a}{q.b}{q.sign}{q.d}".encode()).hexdigest()[:8], 16)
    return "".join(str(v) for v in np.random.default_rng(seed).permutation(spec.modulus))


def question_split(question: str, spec: ToyTaskSpec = DEFAULT_SPEC) -> str:
    """"train" or "eval", from a hash of the question string (stable across runs and machines)."""
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16)
    return "eval" if h % 10_000 < spec.eval_fraction * 10_000 else "train"


@lru_cache(maxsize=16)
def question_pool(split: str, spec: ToyTaskSpec = DEFAULT_SPEC) -> tuple[ToyQuestion, ...]:
    """All questions of a split, in a fixed order. The two pools are disjoint (asserted)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pools: dict[str, list[ToyQuestion]] = {s: [] for s in SPLITS}
    for v0, a, b, sign, d in itertools.product(
        range(spec.modulus), spec.a_values, spec.b_values, "+-", spec.d_values
    ):
        q = ToyQuestion(v0, a, b, sign, d)
        if spec.multiple_choice:
            q = replace(q, order=choice_order(q, spec))
        pools[question_split(q.text, spec)].append(q)
    texts = {s: {q.text for q in pools[s]} for s in SPLITS}
    assert not texts["train"] & texts["eval"], "train and eval questions overlap"
    return tuple(pools[split])


def _hard(q: ToyQuestion, x: int, m: int) -> int:
    return (x * q.a + q.b) % m


def _easy(q: ToyQuestion, x: int, m: int) -> int:
    return (x + q.d) % m if q.sign == "+" else (x - q.d) % m


def _easy_flipped(q: ToyQuestion, x: int, m: int) -> int:
    """The late slip: the easy operation with its sign confused."""
    return (x - q.d) % m if q.sign == "+" else (x + q.d) % m


def true_values(q: ToyQuestion, spec: ToyTaskSpec = DEFAULT_SPEC) -> list[int]:
    """The correct value after each step (length ``n_steps``)."""
    values, x = [], q.v0
    for i in range(spec.n_steps):
        x = _hard(q, x, spec.modulus) if i < spec.n_hard else _easy(q, x, spec.modulus)
        values.append(x)
    return values


def step_op(q: ToyQuestion, i: int, spec: ToyTaskSpec = DEFAULT_SPEC) -> str:
    """The operation text of step ``i`` as written in a path: ``*7+3`` or ``-4``."""
    return f"*{q.a}+{q.b}" if i < spec.n_hard else f"{q.sign}{q.d}"


def to_problem(q: ToyQuestion, split: str, spec: ToyTaskSpec = DEFAULT_SPEC) -> Problem:
    """A :class:`~stoplib.problems.Problem` for one question: kind "toy" (the final value), or
    "multiple_choice" (its letter) for a multiple-choice spec; source and id prefix: ``spec.name``."""
    value = true_values(q, spec)[-1]
    return Problem(
        id=f"{spec.name}-{q.v0}{q.a}{q.b}{'p' if q.sign == '+' else 'm'}{q.d}",
        prompt=q.text,
        answer=q.letter_of(value) if spec.multiple_choice else str(value),
        kind="multiple_choice" if spec.multiple_choice else "toy",
        source=spec.name,
        options=tuple(zip(CHOICE_LETTERS, q.order)) if spec.multiple_choice else None,
        meta={
            "split": split,
            "difficulty": q.b,
            "slip_prob": spec.slip_prob(q.b),
            "late_slip_prob": spec.late_slip_prob(q.d),
            "n_steps": spec.n_steps,
            "n_hard": spec.n_hard,
            **({"options_in_prompt": True} if spec.multiple_choice else {}),
        },
    )


def make_problems(
    n: int | None, seed: int = 0, split: str = "eval", spec: ToyTaskSpec = DEFAULT_SPEC
) -> list[Problem]:
    """``n`` distinct problems of a split, drawn deterministically from ``seed`` (``None``: the
    whole split, shuffled). The default spec has 2,316 train and 564 eval questions.

    Raises ValueError if the split holds fewer than ``n`` questions.
    """
    pool = question_pool(split, spec)
    if n is None:
        n = len(pool)
    if not 0 <= n <= len(pool):
        raise ValueError(f"split {split!r} has {len(pool)} questions; asked for {n}")
    order = np.random.default_rng(seed).permutation(len(pool))[:n]
    return [to_problem(pool[i], split, spec) for i in order]


def _question_of(problem: Problem | ToyQuestion | str) -> ToyQuestion:
    if isinstance(problem, ToyQuestion):
        return problem
    if isinstance(problem, Problem):
        return parse_question(problem.prompt)
    return parse_question(problem)


def solution_text(
    problem: Problem | ToyQuestion | str,
    rng: np.random.Generator | None = None,
    spec: ToyTaskSpec = DEFAULT_SPEC,
    *,
    slip_prob: float | None = None,
) -> str:
    """A chain-of-thought demonstration ending in ``\\boxed{...}`` (no special tokens).

    With ``rng`` None the demonstration is slip-free. Otherwise each hard step slips ("forgot the
    +b": writes ``a*x mod m``) with probability ``slip_prob`` (default ``spec.slip_prob(b)``), and
    every later step is computed correctly from the written (wrong) value: errors carry forward.
    With ``spec.late_slip_rate > 0`` (D4) step ``spec.late_slip_step`` also slips (sign confusion:
    ``x -+ d``) with probability ``spec.late_slip_prob(d)``. With the rate 0 (D3) the random
    stream is exactly the D3 one.
    """
    q = _question_of(problem)
    m = spec.modulus
    p = spec.slip_prob(q.b) if slip_prob is None else slip_prob
    p_late = spec.late_slip_prob(q.d)
    lines, x = [], q.v0
    for i in range(spec.n_steps):
        if i < spec.n_hard:
            y = _hard(q, x, m)
            if rng is not None and p > 0 and rng.random() < p:
                y = (x * q.a) % m
        else:
            y = _easy(q, x, m)
            if i == spec.late_slip_step and rng is not None and p_late > 0 and rng.random() < p_late:
                y = _easy_flipped(q, x, m)
        lines.append(f"{STEP_LETTERS[i]}:{x}{step_op(q, i, spec)}={y}")
        x = y
    lines.append(f"\\boxed{{{q.letter_of(x) if spec.multiple_choice else x}}}")
    return "\n".join(lines)


def cancelling_slip_sets(spec: ToyTaskSpec = DEFAULT_SPEC) -> list[tuple[int, int, tuple[int, ...]]]:
    """``(a, b, slipped hard steps)`` for every nonempty slip set that leaves the answer correct.

    Empty for D3 and D4; long for :data:`D2_SPEC`. Only hard-step slips: see
    :func:`cancelling_late_slips` for the D4 late slip.
    """
    out = []
    for a, b in itertools.product(spec.a_values, spec.b_values):
        for r in range(1, spec.n_hard + 1):
            for steps in itertools.combinations(range(spec.n_hard), r):
                shift = sum(b * a ** (spec.n_hard - 1 - k) for k in steps)
                if shift % spec.modulus == 0:
                    out.append((a, b, steps))
    return out


def cancelling_late_slips(spec: ToyTaskSpec) -> list[tuple[int, int, str, int, tuple[int, ...]]]:
    """``(a, b, sign, d, slipped hard steps)`` where hard slips plus the late sign slip (final
    shift ``-2d`` for "+", ``+2d`` for "-") leave the answer correct. Empty when the late slip is off."""
    if not spec.late_slip_rate:
        return []
    out = []
    for a, b, sign, d in itertools.product(spec.a_values, spec.b_values, "+-", spec.d_values):
        late = -2 * d if sign == "+" else 2 * d
        for r in range(0, spec.n_hard + 1):
            for steps in itertools.combinations(range(spec.n_hard), r):
                shift = -sum(b * a ** (spec.n_hard - 1 - k) for k in steps) + late
                if shift % spec.modulus == 0:
                    out.append((a, b, sign, d, steps))
    return out


# ---------------------------------------------------------------------------------------------
# Checking a generated path.

_STEP_RE = re.compile(r"([a-z]):(\d+)([*+\-][0-9+*\-]*)=(\d+)")
_BOX_RE = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass(frozen=True)
class PathCheck:
    """Step-level verdict on one generated path.

    A step is *wrong* if its line is malformed (does not parse, wrong step letter, or an operation
    that differs from the question's) or if the value it writes differs from the step's operation
    applied to the previous step's written value (the start value for the first step). The final
    ``\\boxed{}`` counts as one more step (index ``n_steps`` of the spec): wrong if missing,
    malformed or not equal to the last written value; any text after it is a malformed step. A
    wrong restated operand whose written result is nevertheless right does not change the carried
    value and is counted in ``operand_typos``, not as a wrong step. Parsing stops at the first
    malformed line (later steps cannot be aligned).

    ``first_wrong_char`` is the character offset where the first wrong step's line starts;
    ``first_error_char`` the offset of its first character that deviates (the wrong digit, or the
    start of the malformed line), i.e. where the error becomes visible in the text.
    """

    final_correct: bool
    answer: str | None
    first_wrong_step: int | None
    first_wrong_char: int | None
    first_error_char: int | None
    first_error_kind: str | None  # "value", "format" or "answer"
    n_steps: int  # step lines written (parsed)
    n_wrong_steps: int
    wrong_hard_steps: int  # wrong steps among the hard steps
    taught_slips: int  # wrong hard steps that are exactly the taught slip (a*x mod m)
    operand_typos: int
    late_slip: bool = False  # D4: the late step is wrong and is exactly the taught sign confusion

    @property
    def has_wrong_step(self) -> bool:
        return self.first_wrong_step is not None

    @property
    def wrong_then_correct(self) -> bool:
        """The path had a wrong step and still ends with the correct answer."""
        return self.first_wrong_step is not None and self.final_correct


def final_answer(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (stripped), or None."""
    matches = _BOX_RE.findall(text)
    return matches[-1].strip() if matches else None


def check_path(
    problem: Problem | ToyQuestion | str, text: str, spec: ToyTaskSpec = DEFAULT_SPEC
) -> PathCheck:
    """Check a generated path (the completion after ``A:``, special tokens removed)."""
    q = _question_of(problem)
    m = spec.modulus
    truth = true_values(q, spec)
    answer = final_answer(text)
    written = (lambda value: q.letter_of(value)) if spec.multiple_choice else str  # the boxed form of a value
    final_correct = answer == written(truth[-1])

    wrong: list[tuple[int, int, int, str]] = []  # (step, line start, error char, kind)
    n_parsed = wrong_hard = taught = typos = 0
    late = False
    prev = q.v0
    pos = 0
    lines = text.split("\n")
    for i in range(spec.n_steps + 1):
        line = lines[i] if i < len(lines) else ""
        start = pos
        pos += len(line) + 1
        if i == spec.n_steps:  # the answer line
            mb = _BOX_RE.fullmatch(line.strip())
            if not mb:
                wrong.append((i, start, start, "answer"))
            elif mb[1].strip() != written(prev):
                wrong.append((i, start, start + line.index("{") + 1, "answer"))
            if text[pos:].strip():  # anything after the answer line is malformed
                wrong.append((i + 1, pos, pos, "format"))
            break
        ms = _STEP_RE.fullmatch(line)
        if (
            not ms
            or ms[1] != STEP_LETTERS[i]
            or ms[3] != step_op(q, i, spec)
            or len(ms[2]) != 1
            or len(ms[4]) != 1
        ):
            wrong.append((i, start, start, "format"))
            break
        n_parsed += 1
        operand, value = int(ms[2]), int(ms[4])
        expected = _hard(q, prev, m) if i < spec.n_hard else _easy(q, prev, m)
        if value != expected:
            wrong.append((i, start, start + ms.start(4), "value"))
            if i < spec.n_hard:
                wrong_hard += 1
                taught += int(operand == prev and value == (prev * q.a) % m)
            elif spec.late_slip_rate and i == spec.late_slip_step:
                late = operand == prev and value == _easy_flipped(q, prev, m)
        elif operand != prev:
            typos += 1
        prev = value

    first = wrong[0] if wrong else None
    return PathCheck(
        final_correct=final_correct,
        answer=answer,
        first_wrong_step=first[0] if first else None,
        first_wrong_char=first[1] if first else None,
        first_error_char=first[2] if first else None,
        first_error_kind=first[3] if first else None,
        n_steps=n_parsed,
        n_wrong_steps=len(wrong),
        wrong_hard_steps=wrong_hard,
        taught_slips=taught,
        operand_typos=typos,
        late_slip=late,
    )


def difficulty(problem: Problem) -> float:
    """The problem's difficulty knob ``b`` (from ``meta`` or parsed from the question)."""
    if "difficulty" in problem.meta:
        return float(problem.meta["difficulty"])
    return float(parse_question(problem.prompt).b)


def expected_pass_rate(problem: Problem, spec: ToyTaskSpec = DEFAULT_SPEC) -> float:
    """Pass rate of the demonstration distribution (exact, cancellations included)."""
    q = _question_of(problem)
    p = spec.slip_prob(q.b)
    p_late = spec.late_slip_prob(q.d)
    late_shift = -2 * q.d if q.sign == "+" else 2 * q.d
    total = 0.0
    for slips in itertools.product([0, 1], repeat=spec.n_hard):
        pr = float(np.prod([p if s else 1 - p for s in slips]))
        shift = -sum(q.b * q.a ** (spec.n_hard - 1 - k) for k, s in enumerate(slips) if s)
        total += pr * (1 - p_late) * (shift % spec.modulus == 0)
        total += pr * p_late * ((shift + late_shift) % spec.modulus == 0)
    return total


def demonstrations(
    problems: Sequence[Problem | ToyQuestion], rng: np.random.Generator, spec: ToyTaskSpec = DEFAULT_SPEC
) -> list[str]:
    """One demonstration (with slips) per problem."""
    return [solution_text(p, rng, spec) for p in problems]
