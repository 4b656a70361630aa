"""The retention scaling law (stoplib.scaling): the paper's tables, fitting, sweeps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from stoplib import paper, scaling
from stoplib.scaling import PAPER_COEFFICIENTS, ScalingCoefficients


@pytest.mark.parametrize("number", [14, 15])
def test_paper_tables_reproduced_cell_by_cell(number):
    printed = paper.recommendation_table(number)
    ours = scaling.paper_table(f"table{number}")
    assert ours.shape == printed.shape == (5, 9)
    assert list(ours.index) == list(printed.index) and list(ours.columns) == list(printed.columns)
    mismatches = [(lp, c, printed.loc[lp, c], ours.loc[lp, c]) for lp in printed.index for c in printed.columns
                  if abs(ours.loc[lp, c] - printed.loc[lp, c]) > 1e-9]
    assert mismatches == []


def test_tables_need_the_1024_unit_and_three_digit_coefficients():
    """C must be the printed number in 1,024-token units; a 0.1% change in a breaks cells."""
    printed = paper.recommendation_table(15)
    budgets = np.asarray(printed.columns, float)
    as_thousands = np.round(scaling.inverse_retention(budgets * 1000, 2048, paper.TABLE15_TASK_LEN), 2)
    assert not np.allclose(as_thousands, printed.loc[2048].to_numpy())
    nudged = ScalingCoefficients(a=1.17e4 * 1.003, b=0.46, c=0.40, d=4.55)
    assert not scaling.paper_table(15, nudged).equals(printed)


def test_worked_examples():
    for c_k, lp, lt, printed in paper.SCALING_EXAMPLES:
        assert round(scaling.inverse_retention(c_k * 1024, lp, lt), 2) == printed


def test_fig6_task_progress_and_gpqa_task_length():
    """Fig. 6's L_P^c / L_T^d: AIME matches L_task 11,950; GPQA implies ~7,000, not 8,650."""
    c, d = PAPER_COEFFICIENTS.c, PAPER_COEFFICIENTS.d
    for (task, lp), printed in paper.FIG6_TASK_PROGRESS.items():
        implied = 1024 * ((lp / 1024) ** c / printed) ** (1 / d)
        expected = paper.TABLE15_TASK_LEN if task == "AIME" else 7000
        assert abs(implied - expected) / expected < 0.002, (task, lp, implied)


def test_inverse_and_optimal_retention():
    inv = scaling.inverse_retention(158 * 1024, 2048, 8650)
    assert isinstance(inv, float)
    assert scaling.optimal_retention(158 * 1024, 2048, 8650) == pytest.approx(1 / inv)
    arr = scaling.inverse_retention(np.array([100, 200]) * 1024, 2048, 8650)
    assert arr.shape == (2,) and arr[1] > arr[0]  # more budget -> prune harder
    # Units: the same call in units of 1 with lengths already divided by 1,024.
    assert scaling.inverse_retention(158, 2, 8650 / 1024, unit=1) == pytest.approx(inv)


def test_recommend_retention():
    rec = scaling.recommend_retention(300 * 1024, 2048, 11950)
    assert rec["inv_gamma"] == pytest.approx(2.97, abs=0.005)
    assert rec["k"] >= 1 and rec["n"] >= rec["k"]
    assert rec["realized_gamma"] == pytest.approx(rec["gamma"], rel=0.1)
    assert rec["expected_tokens"] == pytest.approx(rec["budget"], rel=0.1)
    pow2 = scaling.recommend_retention(300 * 1024, 2048, 11950, power_of_two=True)
    assert math.log2(pow2["n"]).is_integer()
    capped = scaling.recommend_retention(300 * 1024, 2048, 11950, n_max=16)
    assert capped["n"] == 16 and 1 <= capped["k"] <= 16
    small = scaling.recommend_retention(20_000, 2048, 11950)  # law gives γ⁻¹ < 1: keep every path
    assert small["inv_gamma"] < 1 and small["gamma"] == 1.0 and small["n"] == small["k"] == 2
    tiny = scaling.recommend_retention(5_000, 2048, 11950)  # less than one full path: still k = 1
    assert tiny["n"] == tiny["k"] == 1


def _synthetic_points(true: ScalingCoefficients, noise: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grid = [(c, lp, lt) for c in (100, 200, 300, 450) for lp in (512, 1024, 2048, 4096) for lt in (7000, 8650, 11950)]
    df = pd.DataFrame(grid, columns=["budget_k", "prefix_len", "task_len"])
    df["budget"] = df.budget_k * 1024
    clean = scaling.inverse_retention(df.budget, df.prefix_len, df.task_len, true)
    df["inv_gamma"] = clean * np.exp(rng.normal(0.0, noise, len(df)))
    return df


def test_fit_recovers_known_coefficients():
    df = _synthetic_points(PAPER_COEFFICIENTS, noise=0.02, seed=0)
    fit = scaling.fit_scaling_law(df.budget, df.prefix_len, df.task_len, df.inv_gamma)
    assert fit.fixed == {} and fit.notes == [] and fit.n_points == len(df)
    got = fit.coeffs
    assert got.b == pytest.approx(0.46, abs=0.03) and got.c == pytest.approx(0.40, abs=0.03)
    assert got.d == pytest.approx(4.55, abs=0.1) and got.a == pytest.approx(1.17e4, rel=0.3)
    assert fit.r2_log > 0.99 and fit.rmse_log < 0.03
    exact = scaling.fit_scaling_law(df.budget, df.prefix_len, df.task_len,
                                    scaling.inverse_retention(df.budget, df.prefix_len, df.task_len))
    for name, value in PAPER_COEFFICIENTS.as_dict().items():
        assert getattr(exact.coeffs, name) == pytest.approx(value, rel=1e-8)


def test_fit_fixes_unidentifiable_task_exponent():
    df = _synthetic_points(PAPER_COEFFICIENTS, noise=0.02, seed=1)
    df = df[df.task_len == 11950]
    fit = scaling.fit_scaling_law(df.budget, df.prefix_len, 11950, df.inv_gamma)
    assert fit.fixed == {"d": 4.55} and "task_len" in fit.notes[0]
    assert fit.coeffs.a == pytest.approx(1.17e4, rel=0.3)  # with d at its true value, a is recovered
    assert fit.coeffs.b == pytest.approx(0.46, abs=0.05)
    user = scaling.fit_scaling_law(df.budget, df.prefix_len, 11950, df.inv_gamma, fix={"d": 4.55, "c": 0.4})
    assert user.fixed == {"d": 4.55, "c": 0.4} and user.coeffs.c == 0.4 and user.notes == []
    with pytest.raises(ValueError):
        scaling.fit_scaling_law(df.budget, df.prefix_len, 11950, df.inv_gamma, fix={"e": 1.0})


def test_bootstrap_intervals_cover_truth():
    df = _synthetic_points(PAPER_COEFFICIENTS, noise=0.03, seed=2)
    ci = scaling.bootstrap_fit(df.budget, df.prefix_len, df.task_len, df.inv_gamma, n_boot=300, seed=0)
    assert list(ci.index) == ["a", "b", "c", "d"] and not ci.fixed.any()
    truth = PAPER_COEFFICIENTS.as_dict()
    for name in "bcd":
        assert ci.low[name] < truth[name] < ci.high[name], (name, ci.loc[name].tolist())
        assert ci.high[name] - ci.low[name] < 0.3
    assert (ci.low <= ci.estimate).all() and (ci.estimate <= ci.high).all()


def _synthetic_sweep() -> tuple[pd.DataFrame, float]:
    """Accuracy peaks at γ = 1/4 below 300k tokens and at γ = 1/16 above (by construction)."""
    lp, lt, split = 2048, 12000, 300_000
    rows = []
    for inv in (2, 4, 8, 16, 32):
        for n in range(16, 1025, 8):
            k = n / inv
            tokens = scaling.expected_tokens(n, k, lp, lt)
            target = 4 if tokens <= split else 16
            acc = 40 + 2 * math.log2(tokens / 1e5) - 3 * (math.log2(inv) - math.log2(target)) ** 2
            rows.append({"gamma": 1 / inv, "n": n, "prefix_len": lp, "tokens": tokens, "accuracy": acc})
    return pd.DataFrame(rows), split


def test_optimal_gamma_from_sweep_interp():
    sweep, _ = _synthetic_sweep()
    budgets = [150_000, 250_000, 400_000, 800_000]
    out = scaling.optimal_gamma_from_sweep(sweep, budgets)
    assert list(out.columns) == ["prefix_len", "budget", "best_gamma", "accuracy"]
    assert out.budget.tolist() == budgets
    assert out.best_gamma.tolist() == [1 / 4, 1 / 4, 1 / 16, 1 / 16]
    expected = [40 + 2 * math.log2(b / 1e5) for b in budgets]
    assert np.allclose(out.accuracy, expected, atol=0.05)
    default = scaling.optimal_gamma_from_sweep(sweep, n_budgets=5)
    assert len(default) >= 4 and default.budget.is_monotonic_increasing
    assert scaling.optimal_gamma_from_sweep(sweep, [1e3]).empty  # below every curve: dropped


def test_optimal_gamma_from_sweep_bins_and_groups():
    sweep, _ = _synthetic_sweep()
    other = sweep.assign(prefix_len=4096)
    both = pd.concat([sweep, other], ignore_index=True)
    out = scaling.optimal_gamma_from_sweep(both, [250_000, 400_000, 800_000], method="bins")
    assert out.prefix_len.tolist() == [2048] * 3 + [4096] * 3
    assert out.best_gamma.tolist() == [1 / 4, 1 / 16, 1 / 16] * 2
    with pytest.raises(ValueError):
        scaling.optimal_gamma_from_sweep(sweep, method="max")
    with pytest.raises(ValueError):
        scaling.optimal_gamma_from_sweep(sweep.drop(columns="tokens"))


def _bank(n_problems: int = 3, n_paths: int = 16, seed: int = 0):
    """Complete paths of varied length; correct iff the answer is "1"."""
    from stoplib.bank import Bank, BankProblem
    from stoplib.engines.base import ReasoningPath
    from stoplib.problems import Problem

    rng = np.random.default_rng(seed)
    problems = []
    for p in range(n_problems):
        problem = Problem(id=f"q{p}", prompt=f"question {p}", answer="1", kind="toy", source="test")
        lengths = rng.integers(4, 40, n_paths)
        answers = [str(a) for a in rng.integers(0, 3, n_paths)]
        paths = [ReasoningPath(p, i, [1], [5] * int(n), finish_reason="stop") for i, n in enumerate(lengths)]
        problems.append(BankProblem(problem, paths, answers, np.array([a == "1" for a in answers])))
    return Bank(problems)


def test_progressive_schedules_and_their_lengths():
    halving = scaling.PROGRESSIVE_SCHEDULES["halving"]
    assert scaling.progressive_schedule(halving, 64, 36) == [(36, 32), (54, 16), (72, 8)]
    assert scaling.progressive_schedule(scaling.PROGRESSIVE_SCHEDULES["single_L"], 64, 36) == [(36, 8)]
    assert scaling.progressive_schedule(scaling.PROGRESSIVE_SCHEDULES["halving"], 4, 36) is None  # N/8 < 1
    assert scaling.schedule_lengths(36) == [18, 36, 54, 72]
    assert scaling.schedule_lengths(36, {"halving": scaling.PROGRESSIVE_SCHEDULES["halving"]}) == [36, 54, 72]
    assert set(scaling.PROGRESSIVE_SCHEDULES) <= set(scaling.PROGRESSIVE_LABELS)


def test_progressive_curve_replays_every_schedule():
    from stoplib.metrics import no_pruning, replay, replay_progressive

    bank = _bank()
    rng = np.random.default_rng(1)
    scores = {L: [rng.random(16) for _ in bank.problems] for L in scaling.schedule_lengths(6)}
    curve = scaling.progressive_curve(bank, scores, prefix_len=6, ns=(4, 8, 16, 64))
    assert sorted(curve["n"].unique()) == [4, 8, 16]  # 64 > the bank's 16 paths
    assert set(curve[curve["n"] == 4]["schedule"]) == {"no_pruning"}  # N/8 < 1: no schedule fits N = 4
    assert len(curve) == 1 + 2 * (len(scaling.PROGRESSIVE_SCHEDULES) + 1)
    row = curve[(curve["schedule"] == "halving") & (curve["n"] == 16)].iloc[0]
    expected = replay_progressive(bank, scores, [(6, 8), (9, 4), (12, 2)], n=16)
    assert row["stages"] == "16→8@6→4@9→2@12" and row["k"] == 2
    assert row["tokens"] == pytest.approx(expected.tokens.mean()) and row["cons"] == expected.cons
    single = curve[(curve["schedule"] == "single_L") & (curve["n"] == 8)].iloc[0]
    plain = replay(bank, scores[6], n=8, k=1, prefix_len=6)
    assert (single["tokens"], single["cons"], single["avg_kept"]) == (plain.tokens.mean(), plain.cons, plain.avg_kept)
    base = curve[(curve["schedule"] == "no_pruning") & (curve["n"] == 16)].iloc[0]
    assert base["tokens"] == no_pruning(bank, n=16).tokens.mean() and base["label"] == "no pruning"
    with pytest.raises(ValueError, match="no scores for prefix lengths"):
        scaling.progressive_curve(bank, {6: scores[6]}, prefix_len=6, ns=(8,))


def test_at_equal_tokens_interpolates_the_reference_in_log_tokens():
    curve = pd.DataFrame([
        {"schedule": "single_L", "n": 8, "tokens": 100.0, "cons": 0.5, "avg_kept": 0.4},
        {"schedule": "single_L", "n": 16, "tokens": 400.0, "cons": 0.7, "avg_kept": 0.5},
        {"schedule": "halving", "n": 8, "tokens": 200.0, "cons": 0.65, "avg_kept": 0.45},
        {"schedule": "halving", "n": 16, "tokens": 800.0, "cons": 0.8, "avg_kept": 0.55},
    ])
    out = scaling.at_equal_tokens(curve)
    assert list(out["schedule"]) == ["halving", "halving"]
    assert out.loc[0, "cons_single_L"] == pytest.approx(0.6)  # 200 is halfway from 100 to 400 in log tokens
    assert out.loc[0, "cons_gain"] == pytest.approx(0.05) and out.loc[0, "avg_kept_gain"] == pytest.approx(0.0)
    assert np.isnan(out.loc[1, "cons_single_L"]) and np.isnan(out.loc[1, "cons_gain"])  # beyond the reference
    assert scaling.at_equal_tokens(curve, "single_2L")["cons_gain"].isna().all()  # no reference point at all


def _ranked_bank(n_problems: int = 60, n_paths: int = 64, seed: int = 0):
    """Paths of 150-250 tokens whose prefix score is their correctness plus noise: pruning pays."""
    from stoplib.bank import Bank, BankProblem
    from stoplib.engines.base import ReasoningPath
    from stoplib.problems import Problem

    rng = np.random.default_rng(seed)
    problems, scores = [], []
    for p in range(n_problems):
        correct = rng.random(n_paths) < rng.uniform(0.1, 0.9)
        answers = ["1" if c else str(rng.integers(2, 5)) for c in correct]
        paths = [ReasoningPath(p, i, [1], [5] * int(n), finish_reason="stop")
                 for i, n in enumerate(rng.integers(150, 250, n_paths))]
        problems.append(BankProblem(Problem(id=f"q{p}", prompt=f"question {p}", answer="1", kind="toy", source="test"),
                                    paths, answers, correct))
        scores.append(correct + rng.normal(0, 0.8, n_paths))
    return Bank(problems), scores


def test_the_fitted_laws_recipe_lands_near_the_sweeps_best():
    bank, scores = _ranked_bank()
    task_len = float(bank.lengths().mean())
    sweep = scaling.replay_sweep(bank, {30: scores}, gammas=(1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4, 1))
    optimal = scaling.optimal_gamma_from_sweep(sweep)
    fit = scaling.fit_scaling_law(optimal.budget, optimal.prefix_len, task_len, 1 / optimal.best_gamma)
    fitted = scaling.recommendation_vs_sweep(bank, scores, sweep, fit.coeffs, prefix_len=30, task_len=task_len)
    assert list(fitted.columns) == ["budget", "n", "k", "gamma", "tokens", "accuracy", "best_gamma",
                                    "best_accuracy", "gap"]
    assert (fitted.n <= 64).all() and (fitted.k <= fitted.n).all()
    # near the best γ at the tokens it spent (one problem of 60 is 0.017 of Cons@N; the envelope is a
    # maximum over noisy curves, so it sits a little above any single recipe)
    assert fitted.gap.mean() > -0.03 and fitted.gap.min() > -0.1
    never = scaling.ScalingCoefficients(a=1e-6, b=0.0, c=0.0, d=0.0)  # γ* clipped to 1: never prune
    assert scaling.recommendation_vs_sweep(bank, scores, sweep, never, prefix_len=30,
                                           task_len=task_len).gap.mean() < -0.1
    row = fitted.iloc[2]  # the replayed point is replay() at the recipe's (N, k)
    from stoplib.metrics import replay
    assert row.accuracy == replay(bank, scores, n=int(row.n), k=int(row.k), prefix_len=30).cons
    with pytest.raises(ValueError, match="no points at prefix_len=31"):
        scaling.recommendation_vs_sweep(bank, scores, sweep, fit.coeffs, prefix_len=31, task_len=task_len)
