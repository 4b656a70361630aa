"""Notebook 00's testbed analyses on hand-made banks."""

from __future__ import annotations

import numpy as np

from stoplib.bank import Bank, BankProblem
from stoplib.engines.base import ReasoningPath
from stoplib.problems import Problem
from stoplib.testbed import distinct_prefixes, property_table


def _bank(prefixes_per_problem: list[list[list[int]]]) -> Bank:
    problems = []
    for j, rows in enumerate(prefixes_per_problem):
        paths = [ReasoningPath(j, i, [1], token_ids=list(ids) + [9, 9], finish_reason="stop")
                 for i, ids in enumerate(rows)]
        problems.append(BankProblem(Problem(id=f"p{j}", prompt="?", answer="1", kind="math", source="test"),
                                    paths, ["1"] * len(paths), np.ones(len(paths), bool)))
    return Bank(problems)


def test_distinct_prefixes_counts_per_problem_at_the_prefix_length():
    bank = _bank([[[1, 2, 3], [1, 2, 4], [1, 2, 3], [1, 2, 3]],  # 2 distinct at L=3, 1 at L=2
                  [[5, 6, 7], [5, 7, 7], [6, 6, 6], [5, 6, 8]]])  # 4 at L=3, 3 at L=2
    assert distinct_prefixes(bank, 3) == 3.0
    assert distinct_prefixes(bank, 2) == 2.0
    assert distinct_prefixes(bank, 0) == 1.0


def test_property_table_lists_diagnostics_without_bounds():
    table = property_table({"mean_tokens": 54.0, "pass_at_1": 0.5, "distinct_prefixes": 1.9, "auroc": {}})
    row = table[table.property.str.startswith("distinct prefixes")].iloc[0]
    assert row.value == 1.9 and row.required == "" and row.met is None
    assert bool(table[table.property == "mean pass@1"].met.iloc[0])
