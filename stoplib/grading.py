"""Answer extraction and equivalence: math (math-verify), multiple choice (letters), toy (exact).

Math answers are compared with math-verify, gold first: ``verify(parse(gold), parse(pred))``.
Both strings are wrapped in ``\\boxed{...}`` before parsing, because a bare LaTeX string such as
``\\frac{\\sqrt{13}}{2}`` or ``3+2\\sqrt{2}`` parses to nothing or to a wrong prefix ("3").
Comma-separated answers parse to sets, so their order does not matter.

math-verify's timeouts use ``signal.alarm``, which only works in the main thread. In the main
thread every parse/compare is limited to ``MATH_VERIFY_TIMEOUT_S``; in other threads it runs
without a limit (math-verify would raise otherwise), and a pathological prediction such as
``10^{10^{10}}`` can then hang while holding the GIL. Grade in the main thread or in processes.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from stoplib.problems import Problem

DEFAULT_LETTERS = "ABCDEFGHIJ"
MATH_VERIFY_TIMEOUT_S = 5

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_INT_RE = re.compile(r"[+-]?\d+")
# "ANSWER": "C" with any quoting, spacing or case of the key; an unquoted letter must be upper case.
_JSON_CHOICE_RE = re.compile(
    r"""["']?(?i:answer)["']?\s*:\s*"""  # the key
    r"""(?:"\s*([A-Za-z])\s*"|'\s*([A-Za-z])\s*'"""  # a quoted letter, or
    r"""|\(?([A-Z])\)?(?![A-Za-z]|[ \t]+[a-z]))"""  # an upper-case letter not starting a phrase
)
# "the answer is (C)", "answer is: **C**", "answer is option C"
_PHRASE_CHOICE_RE = re.compile(
    r"(?i:answer\s+is)\s*:?\s*[*(\s]*(?i:option\s*)?\(?([A-Z])(?![A-Za-z])"
)
_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}")
_BOXED_CHOICE_RE = re.compile(r"\(?([A-Za-z])\)?(?:$|[\s.:)])")


@dataclass(frozen=True)
class Grade:
    """The extracted answer (None if none was found) and whether it matches the reference."""

    answer: str | None
    correct: bool


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` / ``\\fbox{...}``; None if absent or unbalanced."""
    matches = list(_BOX_RE.finditer(text))
    if not matches:
        return None
    start = matches[-1].end()
    depth = 1
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\":  # skip escaped characters such as \{ and \}
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def extract_choice(text: str, letters: str = DEFAULT_LETTERS) -> str | None:
    """The chosen letter of a multiple-choice answer, or None.

    Tries, in order: the last ``"ANSWER": "C"`` (any quotes, spacing, key case); the last
    ``\\boxed{C}`` / ``\\boxed{\\text{C}}``; the last "answer is (C)" / "Answer: C".
    """
    allowed = set(letters.upper())
    picks = [next(g for g in m.groups() if g) for m in _JSON_CHOICE_RE.finditer(text)]
    picks = [p.upper() for p in picks if p.upper() in allowed]
    if picks:
        return picks[-1]
    boxed = extract_boxed(text)
    if boxed is not None:
        inner = _TEXT_WRAP_RE.sub(r"\1", boxed).strip()
        m = _BOXED_CHOICE_RE.match(inner)
        if m and m.group(1).upper() in allowed:
            return m.group(1).upper()
    picks = [m.group(1) for m in _PHRASE_CHOICE_RE.finditer(text) if m.group(1) in allowed]
    return picks[-1] if picks else None


def extract_answer(text: str, kind: str, letters: str = DEFAULT_LETTERS) -> str | None:
    """The answer string of a model output for a problem kind ("math", "multiple_choice", "toy")."""
    if kind == "multiple_choice":
        return extract_choice(text, letters)
    if kind in ("math", "toy"):
        boxed = extract_boxed(text)
        return None if boxed is None else boxed.strip()
    raise ValueError(f"unknown problem kind {kind!r}")


def _timeout() -> int | None:
    """math-verify's timeouts use signal.alarm, which only works in the main thread."""
    return MATH_VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parse(answer: str, timeout: int | None) -> tuple[object, ...]:
    """math-verify parse of ``\\boxed{answer}``, cached: one gold is compared with many paths."""
    from math_verify import parse

    return tuple(parse(f"\\boxed{{{answer}}}", parsing_timeout=timeout))


def _math_equal(pred: str, gold: str) -> bool:
    pred, gold = pred.strip().strip("$").strip(), gold.strip().strip("$").strip()
    if not pred or not gold:
        return False
    if _INT_RE.fullmatch(pred) and _INT_RE.fullmatch(gold):
        return int(pred) == int(gold)  # fast path: AIME answers, "025" == "25"
    from math_verify import verify

    timeout = _timeout()
    try:
        gold_parsed, pred_parsed = _parse(gold, timeout), _parse(pred, timeout)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=timeout))
    except Exception:  # math-verify should not raise, but a grader must never crash a run
        return False


def answers_equal(pred: str, gold: str, kind: str) -> bool:
    """Whether an extracted answer ``pred`` matches the reference ``gold`` for a problem kind."""
    if kind == "math":
        return _math_equal(pred, gold)
    if kind == "multiple_choice":
        return pred.strip().upper() == gold.strip().upper() != ""
    if kind == "toy":
        return pred.strip() == gold.strip()
    raise ValueError(f"unknown problem kind {kind!r}")


def grade(text: str, problem: Problem) -> Grade:
    """Extract the answer from a model output and compare it with the problem's reference.

    Pass the completion only: a multiple-choice prompt itself contains ``"ANSWER": "C"``.
    """
    letters = "".join(problem.letters) or DEFAULT_LETTERS
    answer = extract_answer(text, problem.kind, letters)
    if answer is None:
        return Grade(answer=None, correct=False)
    return Grade(answer=answer, correct=answers_equal(answer, problem.answer, problem.kind))
