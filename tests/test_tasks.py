"""Generated tasks: the arithmetic word problems (problems, few-shot prompt, step checker)."""

from __future__ import annotations

import pytest

from stoplib.grading import grade
from stoplib.tasks import get_task, load_task_or_file, task_of
from stoplib.tasks import arithmetic as A


def test_problems_are_deterministic_disjoint_and_graded_by_their_own_solution():
    train, evals = A.make_problems(200, seed=0, split="train"), A.make_problems(100, seed=0, split="eval")
    assert train == A.make_problems(200, seed=0, split="train")  # same seed, same problems
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in evals})
    assert {q for q, _ in A.FEW_SHOT}.isdisjoint({p.prompt for p in train + evals})
    for problem in train[:50]:
        start, ops = A.story_of(problem)
        story = A.Story("Ann", "apples", start, tuple(ops), (0,) * len(ops))
        assert grade(story.solution(), problem).correct
        assert A.check_path(problem, story.solution()).first_wrong_step is None
    assert {A.difficulty(p) for p in train} == {2.0, 3.0}
    assert all(int(p.answer) >= 0 for p in train)  # never below zero


def test_few_shot_examples_come_from_the_reserved_split():
    assert len(A.FEW_SHOT) == 3
    for question, solution in A.FEW_SHOT:
        assert A.split_of(question) == "demo" and solution.endswith(".")


def problem_7_5_minus3_8():
    return A.to_problem(A.Story("Mia", "shells", 7, (("+", 5), ("-", 3), ("+", 8)), (0, 0, 0)), "eval")


GOOD = ["Mia has 7 shells.", "Then Mia gets 5 more: 7 + 5 = 12.", "Then Mia gives away 3: 12 - 3 = 9.",
        "Then Mia gets 8 more: 9 + 8 = 17.", "The answer is 17."]


def edit(**lines):
    out = list(GOOD)
    for index, line in lines.items():
        out[int(index[1:])] = line
    return "\n".join(line for line in out if line is not None)


@pytest.mark.parametrize("text, step, kind, correct", [
    ("\n".join(GOOD), None, None, True),
    (edit(l0="Mia has 6 shells."), 0, "copy", True),  # the start restated wrong, then right again
    (edit(l1="Then Mia gets 5 more: 7 + 5 = 13.", l2="Then Mia gives away 3: 13 - 3 = 10.",
          l3="Then Mia gets 8 more: 10 + 8 = 18.", l4="The answer is 18."), 1, "value", False),  # carried
    (edit(l2="Then Mia gets 3 more: 12 + 3 = 15.", l3="Then Mia gets 8 more: 15 + 8 = 23.",
          l4="The answer is 23."), 2, "copy", False),  # the wrong operation
    (edit(l3="The answer is 9.", l4=None), 3, "answer", False),  # a step left out
    ("\n".join(GOOD[:4] + ["Then Mia gets 1 more: 17 + 1 = 18.", "The answer is 18."]), 4, "format", False),
    (edit(l4="The answer is 16."), 4, "answer", False),
    (edit(l1="Then Mia gets 5 more: 7 + 5 = 13.", l2="Then Mia gives away 3: 12 - 3 = 9."), 1, "value", True),
])
def test_check_path_finds_the_first_wrong_step(text, step, kind, correct):
    check = A.check_path(problem_7_5_minus3_8(), text)
    assert (check.first_wrong_step, check.first_error_kind, check.final_correct) == (step, kind, correct)
    assert check.wrong_then_correct == (step is not None and correct)
    if step is not None:
        line_start = sum(len(line) + 1 for line in text.split("\n")[:step])
        assert check.first_wrong_char == line_start <= check.first_error_char


def test_registry_and_sources():
    assert task_of(problem_7_5_minus3_8()).name == "arithmetic"
    assert get_task("toy").check_path is not None
    assert len(load_task_or_file("arithmetic", "eval", 5, 0)) == 5
    assert len(load_task_or_file("aime_2024", "eval", 3, 0)) == 3  # a shipped benchmark
    with pytest.raises(ValueError, match="unknown task 'arith'"):
        get_task("arith")
