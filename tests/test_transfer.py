"""Out-of-domain transfer: the same STOP checkpoint on another bank, a baseline chosen in domain,
paired differences, and notebooks that apply only to models with a second task family."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stoplib import stages, transfer
from stoplib.bank import Bank, BankProblem
from stoplib.cli import notebook_paths, skip_reason
from stoplib.config import resolve
from stoplib.engines.base import ReasoningPath
from stoplib.problems import Problem
from stoplib.signals.base import Signal, SignalInfo


def _bank(correct: list[list[bool]]) -> Bank:
    problems = []
    for p, row in enumerate(correct):
        problem = Problem(id=f"q{p}", prompt=f"question {p}", answer="1", kind="toy", source="test")
        paths = [ReasoningPath(p, i, [1], [5] * 20, finish_reason="stop") for i in range(len(row))]
        problems.append(BankProblem(problem, paths, ["1" if c else "0" for c in row], np.array(row)))
    return Bank(problems)


class _ByIndex(Signal):
    """Scores a prefix by a fixed table (problem, path index) -> score."""

    info = SignalInfo("by_index", "control", "none", False, "test")

    def __init__(self, table: dict[tuple[int, int], float]) -> None:
        self.table = table

    def score(self, prefixes, problem=None):
        return np.array([self.table[(p.prompt_index, p.sample_index)] for p in prefixes])


CORRECT = [[True, False, False, True], [False, True, False, False], [True, True, False, False]]


def _oracle(sign: float) -> _ByIndex:
    return _ByIndex({(p, i): sign * float(c) + 0.01 * i for p, row in enumerate(CORRECT) for i, c in enumerate(row)})


def test_the_best_in_domain_signal_is_chosen_on_the_in_domain_bank():
    bank = _bank(CORRECT)
    signals = {"random": _oracle(1.0), "anti": _oracle(-1.0), "oracle": _oracle(1.0)}
    assert transfer.best_in_domain(bank, signals, n=4, k=1, prefix_len=5) == "oracle"  # random is left out
    with pytest.raises(ValueError, match="no candidate signals"):
        transfer.best_in_domain(bank, {"random": _oracle(1.0)}, n=4, k=1, prefix_len=5)


def test_comparison_rows_and_paired_differences():
    banks = {"in domain": _bank(CORRECT), "transfer": _bank([row[::-1] for row in CORRECT])}
    signals = {"stop": _oracle(1.0), "anti": _oracle(-1.0)}
    table = transfer.comparison(banks, signals, n=4, k=1, prefix_len=5, n_boot=200)
    assert list(table["signal"]) == ["no_pruning", "stop", "anti"] * 2
    home = table[table["bank"] == "in domain"].set_index("signal")
    assert home.loc["stop", "accuracy"] == 1.0 and home.loc["anti", "accuracy"] == 0.0
    assert home.loc["no_pruning", "accuracy"] == pytest.approx(np.mean([np.mean(r) for r in CORRECT]))
    assert home.loc["anti", "stop_minus"] == pytest.approx(1.0)
    assert np.isnan(home.loc["stop", "stop_minus"])  # no difference of the reference from itself
    for _, row in table.iterrows():
        assert row["ci_low"] <= row["accuracy"] <= row["ci_high"]
    with pytest.raises(ValueError, match="reference signal 'stop'"):
        transfer.comparison(banks, {"anti": _oracle(-1.0)}, n=4, k=1, prefix_len=5)


def test_transfer_keeps_labels_and_checkpoint_and_changes_the_bank(tmp_path):
    config = resolve("tiny", "toy-long", results_root=str(tmp_path))
    target = transfer.transfer_problems(config)
    assert target == "toy-mc" and transfer.transfer_problems(config, "arithmetic") == "arithmetic"
    assert transfer.transfer_problems(resolve("tiny", "toy", results_root=str(tmp_path))) is None
    moved = transfer.transfer_config(config, target)
    assert stages.labels_key(moved) == stages.labels_key(config)
    assert stages._trained_dir(moved, "stop") == stages._trained_dir(config, "stop")
    assert stages.bank_key(moved) != stages.bank_key(config)
    assert all(p.kind == "multiple_choice" for p in stages.eval_problems(moved))
    with pytest.raises(ValueError, match="nothing is transferred"):
        transfer.transfer_config(config, config.benchmark)


def test_a_notebook_needing_a_second_task_family_is_skipped_for_models_without_one():
    notebook = next(p for p in notebook_paths() if p.name.startswith("07"))
    needs = json.loads(notebook.read_text())["metadata"]["stoplib"]["requires"]
    assert needs == {"preset": "transfer_problems", "parameter": "transfer_benchmark"}
    assert "toy-long" in skip_reason(notebook, {"model": "toy"})
    assert skip_reason(notebook, {"model": "toy-long"}) is None
    assert skip_reason(notebook, {"model": "toy", "transfer_benchmark": "toy-mc"}) is None
    assert all(skip_reason(p, {"model": "toy"}) is None for p in notebook_paths() if not p.name.startswith("07"))
