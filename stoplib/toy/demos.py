"""Demonstrations of the toy task with the taught slips, and what the slips imply: which slip sets
cancel, and the exact pass rate of the demonstration distribution."""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from stoplib.problems import Problem
from stoplib.toy.questions import (DEFAULT_SPEC, STEP_LETTERS, ToyQuestion, ToyTaskSpec, easy_step, flipped_easy_step,
                                   hard_step, question_of, step_op)


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
    q = question_of(problem)
    m = spec.modulus
    p = spec.slip_prob(q.b) if slip_prob is None else slip_prob
    p_late = spec.late_slip_prob(q.d)
    lines, x = [], q.v0
    for i in range(spec.n_steps):
        if i < spec.n_hard:
            y = hard_step(q, x, m)
            if rng is not None and p > 0 and rng.random() < p:
                y = (x * q.a) % m
        else:
            y = easy_step(q, x, m)
            if i == spec.late_slip_step and rng is not None and p_late > 0 and rng.random() < p_late:
                y = flipped_easy_step(q, x, m)
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


def expected_pass_rate(problem: Problem, spec: ToyTaskSpec = DEFAULT_SPEC) -> float:
    """Pass rate of the demonstration distribution (exact, cancellations included)."""
    q = question_of(problem)
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
