"""The toy task family: its parameters (:class:`ToyTaskSpec` and the shipped variants), its
questions (text, multiple-choice order, train/eval split, pools) and the arithmetic of their steps."""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, replace
from functools import lru_cache

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
    #: Multiple choice: the question lists every value under its letter (A0 ... J9, in an order of
    #: its own) and the path ends with ``\\boxed{<letter>}``; graded as kind "multiple_choice".
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
    order: str = ""  # multiple choice: the values in the order the options list them ("" for a free answer)

    @property
    def text(self) -> str:
        base = f"a{self.v0} f*{self.a}+{self.b} g{self.sign}{self.d}"
        return base + "".join(f" {self.letter_of(int(value))}{value}" for value in self.order)

    def letter_of(self, value: int) -> str:
        """The letter of option ``value``: A for 0, B for 1, ... (a fixed key; the listing order varies)."""
        return CHOICE_LETTERS[value]

    @property
    def options(self) -> tuple[tuple[str, str], ...]:
        """(letter, value) of each option, in the order the question lists them."""
        return tuple((self.letter_of(int(value)), value) for value in self.order)


_QUESTION_RE = re.compile(r"a(\d) f\*(\d)\+(\d) g([+-])(\d)((?: [A-J]\d)*)")


def parse_question(text: str) -> ToyQuestion:
    """Inverse of :attr:`ToyQuestion.text`; raises ValueError on anything else."""
    m = _QUESTION_RE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a toy question: {text!r}")
    options = m[6].split()
    if any(o[0] != CHOICE_LETTERS[int(o[1])] for o in options) or len({o[1] for o in options}) != len(options):
        raise ValueError(f"not a toy question: {text!r} (options must be distinct values under their letters: A0, B1, ...)")
    return ToyQuestion(int(m[1]), int(m[2]), int(m[3]), m[4], int(m[5]), "".join(o[1] for o in options))


def choice_order(q: ToyQuestion, spec: ToyTaskSpec) -> str:
    """The order in which a multiple-choice question lists its options: a permutation of the values
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


def hard_step(q: ToyQuestion, x: int, m: int) -> int:
    """The hard operation: ``(a x + b) mod m``."""
    return (x * q.a + q.b) % m


def easy_step(q: ToyQuestion, x: int, m: int) -> int:
    """The easy operation: ``(x +- d) mod m``."""
    return (x + q.d) % m if q.sign == "+" else (x - q.d) % m


def flipped_easy_step(q: ToyQuestion, x: int, m: int) -> int:
    """The late slip: the easy operation with its sign confused."""
    return (x - q.d) % m if q.sign == "+" else (x + q.d) % m


def true_values(q: ToyQuestion, spec: ToyTaskSpec = DEFAULT_SPEC) -> list[int]:
    """The correct value after each step (length ``n_steps``)."""
    values, x = [], q.v0
    for i in range(spec.n_steps):
        x = hard_step(q, x, spec.modulus) if i < spec.n_hard else easy_step(q, x, spec.modulus)
        values.append(x)
    return values


def step_op(q: ToyQuestion, i: int, spec: ToyTaskSpec = DEFAULT_SPEC) -> str:
    """The operation text of step ``i`` as written in a path: ``*7+3`` or ``-4``."""
    return f"*{q.a}+{q.b}" if i < spec.n_hard else f"{q.sign}{q.d}"


def question_of(problem: Problem | ToyQuestion | str) -> ToyQuestion:
    """The question of a problem, of its prompt text, or the question itself."""
    if isinstance(problem, ToyQuestion):
        return problem
    if isinstance(problem, Problem):
        return parse_question(problem.prompt)
    return parse_question(problem)
