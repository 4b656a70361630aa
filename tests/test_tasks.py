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


@pytest.mark.parametrize("text, step, kind, correct", [
    ("7 + 5 = 12\n12 - 3 = 9\n9 + 8 = 17\nThe answer is 17.", None, None, True),
    ("7 + 5 = 13\n13 - 3 = 10\n10 + 8 = 18\nThe answer is 18.", 0, "value", False),  # arithmetic slip, carried
    ("7 + 5 = 12\n12 + 3 = 15\n15 + 8 = 23\nThe answer is 23.", 1, "copy", False),  # wrong operation copied
    ("7 + 5 = 12\n12 - 3 = 9\nThe answer is 9.", 2, "answer", False),  # a step left out
    ("7 + 5 = 12\n12 - 3 = 9\n9 + 8 = 17\n17 + 1 = 18\nThe answer is 18.", 3, "format", False),  # a step added
    ("7 + 5 = 12\n12 - 3 = 9\n9 + 8 = 17\nThe answer is 16.", 3, "answer", False),
    ("7 + 5 = 13\n12 - 3 = 9\n9 + 8 = 17\nThe answer is 17.", 0, "value", True),  # wrong, then undone
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
