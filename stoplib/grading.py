"""Answer extraction and equivalence per problem kind.

- ``math``: the last ``\\boxed{...}``, compared with math-verify;
- ``multiple_choice``: the chosen letter;
- ``integer``: the last "answer is N" (else the last ``\\boxed{N}``), compared as integers;
- ``toy``: the organism's last ``\\boxed{...}``, compared exactly.

An empty box is no answer. Votes group answers by the same equivalence (:func:`answer_classes`):
"033", "33" and "33." are one answer, as are ``\\frac{1}{2}`` and ``0.5`` for math.

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

import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

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
# "The answer is 17.", "answer is: **17**", "Answer: 17" (the integer kind's rule)
_ANSWER_IS_RE = re.compile(r"(?i:answer(?:\s+is)?)\s*:?\s*[*$\\(\s]*([+-]?\d[\d,]*(?:\.\d+)?)")
_NUMBER_RE = re.compile(r"[+-]?\d[\d,]*(?:\.\d*)?")
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


def as_integer(text: str) -> int | None:
    """``text`` as an integer if it writes one: "33", "033", "+33", "33.", "33.0", "1,000"; else None."""
    text = text.strip().strip("$").strip().rstrip(".").strip()
    if not _NUMBER_RE.fullmatch(text) or ("," in text and not re.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.0*)?", text)):
        return None
    whole, _, fraction = text.replace(",", "").partition(".")
    if fraction.strip("0"):
        return None
    return int(whole)


def extract_integer(text: str) -> str | None:
    """The integer kind's rule: the last "answer is N" / "Answer: N", else the last boxed integer."""
    picks = [m.group(1) for m in _ANSWER_IS_RE.finditer(text)]
    picks = [str(as_integer(p)) for p in picks if as_integer(p) is not None]
    if picks:
        return picks[-1]
    boxed = extract_boxed(text)
    value = None if boxed is None else as_integer(_TEXT_WRAP_RE.sub(r"\1", boxed))
    return None if value is None else str(value)


def extract_answer(text: str, kind: str, letters: str = DEFAULT_LETTERS) -> str | None:
    """The answer string of a model output for a problem kind (see the module docstring).

    None when there is no answer; an empty ``\\boxed{}`` is no answer.
    """
    if kind == "multiple_choice":
        return extract_choice(text, letters)
    if kind == "integer":
        return extract_integer(text)
    if kind in ("math", "toy"):
        boxed = extract_boxed(text)
        return None if boxed is None or not boxed.strip() else boxed.strip()
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
    pred_int, gold_int = as_integer(pred), as_integer(gold)
    if pred_int is not None and gold_int is not None:
        return pred_int == gold_int  # fast path: AIME answers, "025" == "25" == "25."
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
    if kind == "integer":
        a, b = as_integer(pred), as_integer(gold)
        return a is not None and a == b
    if kind == "toy":
        return pred.strip() == gold.strip() != ""
    raise ValueError(f"unknown problem kind {kind!r}")


def answer_classes(answers: Sequence[str | None], kind: str) -> list[int | None]:
    """Equivalence class of each answer (None stays None): equal ids mean "the same answer".

    Votes count classes, not strings. The classes depend only on which answers occur, never on
    their order:

    * answers with one canonical form (:func:`_canonical`) are one answer: integers and letters
      compared by value ("033", "33" and "33." are 33), other strings after stripping spaces and
      ``$``;
    * for math, two canonical forms are also one answer when math-verify finds them equal in
      either direction (``\\frac{1}{2}`` and ``0.5``; ``2^{10}`` and ``1024``). math-verify's
      equality need not be transitive, so the classes are its transitive closure: the connected
      components of the graph whose edges are the equal pairs (if a = b and b = c, then a, b
      and c are one class even when a = c is not found).

    Class ids number the classes by their first member in ``answers`` (0, 1, ...).
    """
    keys = [None if answer is None or not str(answer).strip() else _canonical(answer, kind) for answer in answers]
    parent = {key: key for key in keys if key is not None}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    if kind == "math":
        distinct = sorted(parent)
        for i, a in enumerate(distinct):
            for b in distinct[i + 1 :]:
                if a.startswith("int:") and b.startswith("int:"):
                    continue  # two different integer values
                root_a, root_b = find(a), find(b)
                if root_a != root_b and _same_math_answer(_math_form(a), _math_form(b)):
                    parent[max(root_a, root_b)] = min(root_a, root_b)
    ids: dict[str, int] = {}
    return [None if key is None else ids.setdefault(find(key), len(ids)) for key in keys]


def _math_form(key: str) -> str:
    """The string math-verify compares for a canonical key (an integer's value, else the key)."""
    return key[4:] if key.startswith("int:") else key


def _same_math_answer(a: str, b: str) -> bool:
    """Whether math-verify finds ``a`` and ``b`` equal in either direction (its ``verify`` is gold
    first and need not be symmetric)."""
    a, b = min(a, b), max(a, b)
    return _same_math_answer_cached(a, b, _timeout())


@lru_cache(maxsize=65536)
def _same_math_answer_cached(a: str, b: str, timeout: int | None) -> bool:
    # ``timeout`` only keys the cache: a comparison made without a time limit (in a thread) is
    # not reused where one applies. ``_math_equal`` reads the limit itself.
    return _math_equal(a, b) or _math_equal(b, a)


def _canonical(answer: str, kind: str) -> str:
    value = as_integer(answer) if kind in ("math", "integer") else None
    if value is not None:
        return f"int:{value}"
    if kind == "multiple_choice":
        return answer.strip().upper()
    return answer.strip().strip("$").strip()


def grade(text: str, problem: Problem) -> Grade:
    """Extract the answer from a model output and compare it with the problem's reference.

    Pass the completion only: a multiple-choice prompt itself contains ``"ANSWER": "C"``.
    """
    letters = "".join(problem.letters) or DEFAULT_LETTERS
    answer = extract_answer(text, problem.kind, letters)
    if answer is None:
        return Grade(answer=None, correct=False)
    return Grade(answer=answer, correct=answers_equal(answer, problem.answer, problem.kind))


def majority_vote(answers: Sequence[str | None], scores: Sequence[float] | None = None,
                  kind: str | None = None) -> str | None:
    """The most frequent answer (None: no answer), counting equivalent answers as one.

    ``kind`` (a problem kind) groups answers by the grader's equivalence
    (:func:`answer_classes`: "033", "33" and "33." are one answer); without it
    answers are compared as strings. Ties go to the answer with the higher best score, then to
    the one seen first. Returns the first-seen member of the winning group.
    """
    classes = list(answers) if kind is None else answer_classes(answers, kind)
    counts: dict[object, int] = {}
    best_score: dict[object, float] = {}
    first: dict[object, int] = {}
    for i, c in enumerate(classes):
        if c is None:
            continue
        counts[c] = counts.get(c, 0) + 1
        s = -math.inf if scores is None or math.isnan(scores[i]) else float(scores[i])
        best_score[c] = max(best_score.get(c, -math.inf), s)
        first.setdefault(c, i)
    if not counts:
        return None
    winner = max(counts, key=lambda c: (counts[c], best_score[c], -first[c]))
    return answers[first[winner]]
