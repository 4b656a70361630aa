"""Ablation settings change one thing, share the run's own checkpoint, and their tables agree with
the per-problem values they summarize."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from stoplib import ablations, stages
from stoplib.config import resolve
from stoplib.metrics import BankArrays, within_problem_auroc
from stoplib.taxonomy import seeded


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return resolve("small", "toy", results_root=str(tmp_path_factory.mktemp("results")))


def test_each_axis_changes_only_its_setting(config):
    m = ablations.ablated(config, "num_tokens", 6, 1)
    assert m.stop.num_tokens == 6 and m.train.seed == 1
    assert (m.stop.lora_r, m.train.lr) == (config.stop.lora_r, config.train.lr)
    r = ablations.ablated(config, "lora_r", 32, 0)
    assert r.stop.lora_r == 32 and r.stop.lora_alpha / r.stop.lora_r == config.stop.lora_alpha / config.stop.lora_r
    assert r.stop.num_tokens == config.stop.num_tokens
    lr = ablations.ablated(config, "lr", 3e-3, 2)
    assert lr.train.lr == 3e-3 and lr.stop == config.stop and lr.train.seed == 2
    init = ablations.ablated(config, "embedding_init", "random", 0)
    assert init.stop == replace(config.stop, embedding_init="random") and init.train == config.train
    labels = ablations.ablated(config, "label_fraction", 0.25, 0)
    assert labels.train == replace(config.train, label_fraction=0.25) and labels.stop == config.stop
    for axis, bad in (("embedding_init", "zeros"), ("label_fraction", 0), ("label_fraction", 1.5),
                      ("num_tokens", 0), ("lr", 2)):
        with pytest.raises(ValueError, match=axis):
            ablations.ablated(config, axis, bad, 0)


def test_more_axes_hold_the_runs_own_values(config):
    more = ablations.more_axes(config)
    assert set(more) | set(ablations.default_grid(config)) == set(ablations.AXES)
    for axis, values in more.items():
        assert ablations.default_value(config, axis) in values, axis
        assert len(values) == len(set(values)) >= 3, axis
    assert len(ablations.settings(config, more, seeds=[0])) == sum(len(v) for v in more.values())


def test_the_runs_own_value_is_the_store_entry_of_notebook_03(config):
    """The default value of every axis trains nothing new: same store directory as the seed spread."""
    for axis in ablations.AXES:
        value = ablations.default_value(config, axis)
        for seed in (0, 1):
            same = ablations.ablated(config, axis, value, seed)
            assert stages._trained_dir(same, "stop") == stages._trained_dir(seeded(config, seed), "stop"), axis
    other = ablations.ablated(config, "lora_r", 2 * config.stop.lora_r, 0)
    assert stages._trained_dir(other, "stop") != stages._trained_dir(config, "stop")


def test_default_value_shared_by_axes_is_trained_once(config):
    grid = {"num_tokens": (1, config.stop.num_tokens), "lora_r": (config.stop.lora_r, 2)}
    settings = ablations.settings(config, grid, seeds=[0, 1])
    assert len(settings) == 8
    assert sum(s.is_default for s in settings) == 4  # the run's value, once per axis and seed
    jobs = ablations.training_jobs(settings)
    assert len(jobs) == 6  # M=1 x 2 seeds, r=2 x 2 seeds, the shared default x 2 seeds
    assert all(what == "stop" for _, what in jobs)


def test_default_grid_brackets_the_runs_values(config):
    grid = ablations.default_grid(config)
    assert set(ablations.PAPER_STOP_TOKENS) <= set(grid["num_tokens"])
    assert min(grid["lora_r"]) < config.stop.lora_r < max(grid["lora_r"])
    tiny = ablations.default_grid(resolve("tiny", "toy", results_root=config.results_root))
    assert all(len(values) == 2 for values in tiny.values())


def _arrays(correct):
    correct = np.asarray(correct, dtype=bool)
    p, n = correct.shape
    return BankArrays(problem_ids=[f"p{i}" for i in range(p)], lengths=np.full((p, n), 10),
                      finished=np.ones((p, n), bool), correct=correct, answers=[["1"] * n] * p)


def test_per_problem_auroc_matches_the_within_problem_auroc():
    rng = np.random.default_rng(0)
    correct = rng.random((6, 8)) < 0.5
    correct[0] = True  # one problem without both classes: NaN
    scores = [rng.random(8) for _ in range(6)]
    values = ablations.per_problem_auroc(_arrays(correct), scores, n=8)
    assert np.isnan(values[0]) and np.isfinite(values[1:]).all()
    groups = np.repeat(np.arange(6), 8)
    expected = within_problem_auroc(np.concatenate(scores), correct.ravel(), groups)
    assert np.nanmean(values) == pytest.approx(expected)


def _scored():
    """Two values of one axis, two seeds each, on 5 problems (hand-made per-problem values)."""
    kept = {("num_tokens", 1, 0): np.array([1.0, 0.0, 0.5, 1.0, 0.0]), ("num_tokens", 1, 1): np.array([1.0, 0.5, 0.5, 1.0, 0.0]),
            ("num_tokens", 4, 0): np.array([1.0, 1.0, 0.5, 1.0, 0.5]), ("num_tokens", 4, 1): np.array([1.0, 1.0, 1.0, 1.0, 0.5])}
    roc = {key: np.array([np.nan, 0.5, 0.75, np.nan, 1.0]) for key in kept}
    roc[("num_tokens", 4, 1)] = np.array([np.nan, np.nan, 0.25, np.nan, 1.0])
    runs = pd.DataFrame([{"axis": a, "value": v, "seed": s, "is_default": v == 4, "params": 10, "best_epoch": 2,
                          "val_within_auroc": 0.6, "accuracy": float(kept[(a, v, s)].mean()),
                          "cons": 0.5, "auroc_within": float(np.nanmean(roc[(a, v, s)]))} for a, v, s in kept])
    return ablations.AblationScores(runs, kept, roc)


def test_summary_is_the_seed_mean_with_an_interval_over_problems():
    table = ablations.summary_table(_scored(), n_boot=200)
    row = table[table["value"] == 4].iloc[0]
    assert row["accuracy"] == pytest.approx(np.mean([0.8, 0.9]))
    assert row["ci_low"] <= row["accuracy"] <= row["ci_high"] and row["ci_high"] - row["ci_low"] > 0
    assert row["accuracy_seed_std"] == pytest.approx(np.std([0.8, 0.9], ddof=1))
    # per problem, AUROCs are averaged over the seeds that have them: (0.5), (0.75 + 0.25) / 2, (1.0)
    assert row["auroc_within"] == pytest.approx(np.mean([0.5, 0.5, 1.0]))
    assert bool(row["is_default"]) and not bool(table[table["value"] == 1].iloc[0]["is_default"])


def test_differences_from_a_reference_are_paired_per_problem():
    scored = _scored()
    reference = np.array([1.0, 0.5, 0.5, 1.0, 0.5])
    gap = ablations.compare_with(scored, reference, n_boot=200)
    row = gap[gap["value"] == 4].iloc[0]
    expected = np.mean(ablations.seed_mean_kept(scored, "num_tokens", 4) - reference)
    assert row["difference"] == pytest.approx(expected) and row["ci_low"] <= expected <= row["ci_high"]
    with pytest.raises(ValueError, match="num_tokens=6"):
        ablations.seed_mean_kept(scored, "num_tokens", 6)


def test_records_write_nan_as_none():
    rows = ablations.records(pd.DataFrame([{"a": np.nan, "b": np.float64(0.5), "c": np.int64(3), "d": "x"}]))
    assert rows == [{"a": None, "b": 0.5, "c": 3, "d": "x"}]
    assert type(rows[0]["c"]) is int
