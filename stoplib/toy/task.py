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

Its parts live in modules of one job each, and every name of theirs is importable from here:
:mod:`stoplib.toy.questions` (the family and its questions), :mod:`stoplib.toy.demos`
(demonstrations and their slips), :mod:`stoplib.toy.check` (checking a path). This module makes
:class:`~stoplib.problems.Problem` records of the questions.
"""

from __future__ import annotations

import numpy as np

from stoplib.problems import Problem
from stoplib.toy.check import PathCheck, check_path, final_answer
from stoplib.toy.demos import (cancelling_late_slips, cancelling_slip_sets, demonstrations, expected_pass_rate,
                               solution_text)
from stoplib.toy.questions import (CHOICE_LETTERS, D2_SPEC, D3_SPEC, D4_SPEC, DEFAULT_PREFIX_LEN, DEFAULT_SPEC,
                                   LONG_SPEC, MC_SPEC, SOURCE, SPLITS, STEP_LETTERS, ToyQuestion, ToyTaskSpec,
                                   choice_order, parse_question, question_pool, question_split, step_op,
                                   true_values)


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
        options=q.options if spec.multiple_choice else None,
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


def difficulty(problem: Problem) -> float:
    """The problem's difficulty knob ``b`` (from ``meta`` or parsed from the question)."""
    if "difficulty" in problem.meta:
        return float(problem.meta["difficulty"])
    return float(parse_question(problem.prompt).b)
