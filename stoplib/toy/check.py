"""Checking a generated path of the toy task step by step (:func:`check_path`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from stoplib.problems import Problem
from stoplib.tasks.base import StepCheck
from stoplib.toy.questions import (DEFAULT_SPEC, STEP_LETTERS, ToyQuestion, ToyTaskSpec, easy_step, flipped_easy_step,
                                   hard_step, question_of, step_op, true_values)

_STEP_RE = re.compile(r"([a-z]):(\d+)([*+\-][0-9+*\-]*)=(\d+)")
_BOX_RE = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass(frozen=True)
class PathCheck(StepCheck):
    """Step-level verdict on one generated path: the fields every task's checker gives
    (:class:`~stoplib.tasks.base.StepCheck`; ``first_error_kind`` "value", "format" or "answer",
    ``n_steps`` the step lines written), and the slips the toy task teaches.

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

    wrong_hard_steps: int  # wrong steps among the hard steps
    taught_slips: int  # wrong hard steps that are exactly the taught slip (a*x mod m)
    operand_typos: int
    late_slip: bool = False  # D4: the late step is wrong and is exactly the taught sign confusion


def final_answer(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in ``text`` (stripped), or None."""
    matches = _BOX_RE.findall(text)
    return matches[-1].strip() if matches else None


def check_path(
    problem: Problem | ToyQuestion | str, text: str, spec: ToyTaskSpec = DEFAULT_SPEC
) -> PathCheck:
    """Check a generated path (the completion after ``A:``, special tokens removed)."""
    q = question_of(problem)
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
        expected = hard_step(q, prev, m) if i < spec.n_hard else easy_step(q, prev, m)
        if value != expected:
            wrong.append((i, start, start + ms.start(4), "value"))
            if i < spec.n_hard:
                wrong_hard += 1
                taught += int(operand == prev and value == (prev * q.a) % m)
            elif spec.late_slip_rate and i == spec.late_slip_step:
                late = operand == prev and value == flipped_easy_step(q, prev, m)
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
