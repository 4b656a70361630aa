"""Tests for stoplib.grading: extraction, math-verify equivalence, every benchmark answer."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from stoplib.grading import (
    Grade,
    answers_equal,
    extract_answer,
    extract_boxed,
    extract_choice,
    grade,
)
from stoplib.problems import Problem, load_problems

MATH_BENCHMARKS = ["aime_2024", "aime_2025", "brumo_2025", "hmmt_2025"]


def _bump_first_digit(answer: str) -> str:
    m = re.search(r"\d", answer)
    assert m is not None
    return answer[: m.start()] + str((int(m.group()) + 1) % 10) + answer[m.end() :]


def _wrong_answers(problem: Problem, others: list[Problem]) -> list[str]:
    """Answers that must grade incorrect: a neighbour's answer, +1, a perturbed expression."""
    gold = problem.answer
    wrong = [_bump_first_digit(gold)]
    neighbour = others[(others.index(problem) + 1) % len(others)].answer
    if neighbour != gold:
        wrong.append(neighbour)
    if re.fullmatch(r"-?\d+", gold):
        wrong.append(str(int(gold) + 1))
    if "," in gold:
        wrong.append(gold.split(",")[0])  # only one element of the set
    else:
        wrong.append(f"-({gold})")
    return wrong


@pytest.mark.parametrize("name", MATH_BENCHMARKS)
def test_every_math_answer(name: str) -> None:
    problems = load_problems(name)
    failures = []
    for problem in problems:
        output = f"Let me think. ... so the answer is \\boxed{{{problem.answer}}}."
        result = grade(output, problem)
        if result != Grade(answer=problem.answer, correct=True):
            failures.append(f"{problem.id}: {problem.answer!r} graded {result}")
        for wrong in _wrong_answers(problem, problems):
            if grade(f"The answer is $\\boxed{{{wrong}}}$", problem).correct:
                failures.append(f"{problem.id}: wrong {wrong!r} accepted for {problem.answer!r}")
    assert not failures, "\n".join(failures)


def test_every_zebralogic_answer() -> None:
    problems = load_problems("zebralogic")
    failures = []
    for problem in problems:
        letters = problem.letters
        wrong = letters[(letters.index(problem.answer) + 1) % len(letters)]
        if not grade(f'Reasoning...\n{{"ANSWER": "{problem.answer}"}}', problem).correct:
            failures.append(f"{problem.id}: {problem.answer} not accepted")
        if not grade(f"So the answer is \\boxed{{{problem.answer}}}", problem).correct:
            failures.append(f"{problem.id}: boxed {problem.answer} not accepted")
        if grade(f'"ANSWER": "{wrong}"', problem).correct:
            failures.append(f"{problem.id}: wrong {wrong} accepted")
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("0.5", "\\frac{1}{2}"),
        ("\\frac{1}{2}", "\\frac12"),
        ("\\dfrac{6}{8}", "\\frac{3}{4}"),
        ("25", "025"),
        ("033", "33"),
        ("20 \\pi", "20\\pi"),
        ("\\frac{\\pi - 2}{\\pi}", "1-\\frac{2}{\\pi}"),
        ("26! \\cdot 2^{25}", "2^{25} \\cdot 26!"),
        ("\\frac{9}{\\sqrt{23}}", "\\frac{9 \\sqrt{23}}{23}"),
        ("\\frac{\\sqrt{570}}{12}", "\\sqrt{\\frac{95}{24}}"),
        ("633825300114114700748351602688", "2^{99}"),
        ("$\\frac{\\sqrt{2}}{2}$", "\\sqrt{2}/2"),
        ("x = 70", "70"),
        (
            "\\frac{-1-\\sqrt{17}}{2}, \\frac{-1+\\sqrt{17}}{2}",
            "\\frac{-1+\\sqrt{17}}{2}, \\frac{-1-\\sqrt{17}}{2}",
        ),
        (
            "\\frac{3-i\\sqrt{3}}{2}, 3, 2, \\frac{3+i\\sqrt{3}}{2}",
            "2,3,\\frac{3+i\\sqrt{3}}{2},\\frac{3-i\\sqrt{3}}{2}",
        ),
    ],
)
def test_equivalent_math_forms(pred: str, gold: str) -> None:
    assert answers_equal(pred, gold, "math")


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("0.51", "\\frac{1}{2}"),
        ("26", "025"),
        ("2^{26} \\cdot 26!", "2^{25} \\cdot 26!"),
        ("\\sqrt{23}+2\\sqrt{3}", "\\sqrt{23}-2 \\sqrt{3}"),
        ("\\frac{-1+\\sqrt{17}}{2}", "\\frac{-1+\\sqrt{17}}{2}, \\frac{-1-\\sqrt{17}}{2}"),
        ("", "1"),
        ("seventy", "70"),
    ],
)
def test_different_math_forms(pred: str, gold: str) -> None:
    assert not answers_equal(pred, gold, "math")


def test_boxed_033_grades_as_33() -> None:
    problem = Problem(id="1", prompt="?", answer="33", kind="math", source="t")
    assert grade("thus \\boxed{033}", problem) == Grade(answer="033", correct=True)


def test_extract_boxed() -> None:
    assert extract_boxed("so \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    last = "\\boxed{1} then \\boxed{ \\sqrt{\\frac{95}{24}} }"
    assert extract_boxed(last) == " \\sqrt{\\frac{95}{24}} "
    assert extract_boxed("\\fbox{7}") == "7"
    assert extract_boxed("\\boxed{\\{1, 2\\}}") == "\\{1, 2\\}"
    assert extract_boxed("no box here") is None
    assert extract_boxed("\\boxed{5} and then \\boxed{\\frac{1}{2}") is None  # truncated output


def test_absent_answer_is_incorrect() -> None:
    problem = Problem(id="1", prompt="?", answer="42", kind="math", source="t")
    assert grade("The answer is 42.", problem) == Grade(answer=None, correct=False)
    assert extract_answer("nothing", "math") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('... "ANSWER": "C"', "C"),
        ("{'answer': 'd'}", "D"),
        ("answer : B", "B"),
        ('"ANSWER": "A" ... on reflection "ANSWER": "E"', "E"),
        ("so \\boxed{\\text{C}}", "C"),
        ("so \\boxed{(B)}", "B"),
        ("Therefore the answer is (D).", "D"),
        ("Answer: F", "F"),
        ("Answer: A cat is not an option", None),
        ('"ANSWER": "Z"', None),
        ("I do not know", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text, letters="ABCDEF") == expected


def test_multiple_choice_and_toy_equality() -> None:
    assert answers_equal("c", "C", "multiple_choice")
    assert not answers_equal("B", "C", "multiple_choice")
    assert answers_equal(" 12 ", "12", "toy")
    assert not answers_equal("012", "12", "toy")
    toy = Problem(id="t", prompt="3+4=", answer="7", kind="toy", source="toy")
    assert grade("steps ... \\boxed{ 7 }", toy) == Grade(answer="7", correct=True)
    assert not grade("\\boxed{8}", toy).correct


def test_math_grading_in_worker_threads() -> None:
    """math-verify's signal timeouts fail outside the main thread; grading must still work."""
    cases = [("0.5", "\\frac{1}{2}", True), ("\\sqrt{7}", "\\sqrt{6}", False),
             ("\\frac{-1-\\sqrt{17}}{2}, \\frac{-1+\\sqrt{17}}{2}",
              "\\frac{-1+\\sqrt{17}}{2}, \\frac{-1-\\sqrt{17}}{2}", True)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda c: answers_equal(c[0], c[1], "math"), cases))
    assert results == [expected for _, _, expected in cases]


def test_unknown_kind() -> None:
    with pytest.raises(ValueError):
        answers_equal("1", "1", "essay")


def test_empty_box_is_no_answer_and_integers_with_a_trailing_period_match():
    assert extract_answer("so \\boxed{}", "math") is None
    assert extract_answer("so \\boxed{ }", "toy") is None
    assert answers_equal("33.", "33", "math") and answers_equal("033", "33.0", "math")
    assert not answers_equal("33.5", "33", "math")


@pytest.mark.parametrize("text, expected", [
    ("7 + 5 = 12\nThe answer is 12.", "12"),
    ("The answer is: **17**", "17"),
    ("Answer: 1,234.", "1234"),
    ("the answer is 3, then the answer is 4.", "4"),  # the last one counts
    ("no conclusion, \\boxed{9}", "9"),  # falls back to a box
    ("The answer is twelve.", None),
    ("The answer is 2.5.", None),  # not an integer
])
def test_integer_kind_extraction(text, expected):
    assert extract_answer(text, "integer") == expected


def test_integer_kind_grading():
    problem = Problem(id="a", prompt="p", answer="17", kind="integer", source="t")
    assert grade("9 + 8 = 17\nThe answer is 17.", problem).correct
    assert grade("The answer is 017.", problem).correct
    assert not grade("The answer is 18.", problem).correct
    assert not grade("I do not know.", problem).correct


def test_answer_classes_group_equivalent_answers():
    from stoplib.grading import answer_classes

    assert answer_classes(["033", "33", "33.", None, "\\frac{1}{2}", "0.5", "12", ""], "math") == \
        [0, 0, 0, None, 1, 1, 2, None]
    assert answer_classes(["b", "B", "C"], "multiple_choice") == [0, 0, 1]
    assert answer_classes(["7", "07", "7."], "integer") == [0, 0, 0]


def test_answer_classes_close_a_non_transitive_or_one_sided_equality(monkeypatch):
    """math-verify's equality is gold-first and need not be transitive: the classes are the connected
    components of "equal in either direction", whatever the order of the answers."""
    from stoplib import grading

    one_sided = {("q_1", "q_2"), ("q_3", "q_2")}  # (pred, gold) pairs found equal; nothing else is
    monkeypatch.setattr(grading, "_math_equal", lambda pred, gold: (pred, gold) in one_sided)
    grading._same_math_answer_cached.cache_clear()
    try:
        for answers in (["q_1", "q_3", "q_2", "q_4"], ["q_2", "q_4", "q_3", "q_1"], ["q_4", "q_3", "q_1", "q_2"]):
            classes = dict(zip(answers, grading.answer_classes(answers, "math")))
            assert classes["q_1"] == classes["q_2"] == classes["q_3"] != classes["q_4"], answers
        assert grading.majority_vote(["q_4", "q_4", "q_1", "q_3", "q_2"], kind="math") == "q_1"  # 3 votes vs 2
        assert grading.majority_vote(["q_4", "q_4", "q_1", "q_3"], kind="math") == "q_4"  # no q_2 joins q_1, q_3
    finally:
        grading._same_math_answer_cached.cache_clear()
