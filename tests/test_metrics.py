"""Replay metrics over a bank: hand-computed policies, brute-force references, the online pipeline."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
import torch

from stoplib.bank import Bank, BankProblem, build_bank
from stoplib.engines.base import ReasoningPath, SamplingParams
from stoplib.engines.hf import HFEngine, load_model_and_tokenizer
from stoplib.metrics import (bank_arrays, bank_pass_at_k, bootstrap_ci, check_schedule, no_pruning,
                             paired_bootstrap_ci, pass_at_k, replay, replay_grid, replay_progressive, score_bank,
                             signal_auroc)
from stoplib.grading import majority_vote
from stoplib.pipeline import run_pipeline
from stoplib.problems import Problem
from stoplib.signals import make_signal, top_k
from stoplib.signals import type1  # noqa: F401  (registers slimsc_jaccard until signals/__init__ imports it)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread on this shared 2-core machine; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_bank(spec) -> Bank:
    """spec: per problem (gold, lengths, answers); correctness = answer == gold."""
    problems = []
    for p, (gold, lengths, answers) in enumerate(spec):
        problem = Problem(id=f"q{p}", prompt=f"question {p}", answer=gold, kind="toy", source="test")
        paths = [ReasoningPath(p, i, [1], [5] * n, finish_reason="stop") for i, n in enumerate(lengths)]
        problems.append(BankProblem(problem, paths, list(answers), np.array([a == gold for a in answers])))
    return Bank(problems)


HAND = make_bank([
    ("7", [3, 10, 12, 8], ["7", "7", "3", None]),  # path 0 ends within L = 5
    ("5", [6, 6, 6, 6], ["4", "5", "5", "4"]),
    ("1", [4, 9, 9, 9], [None, None, "1", None]),  # path 0 ends within L = 5
])
HAND_SCORES = [[99.0, 0.9, 0.9, 0.9], [0.8, 0.2, 0.7, 0.1], [0.0, 0.3, 0.2, 0.25]]


def test_replay_on_a_hand_built_bank():
    r = replay(HAND, HAND_SCORES, n=4, k=2, prefix_len=5)
    # q0: path 0 finished early (kept, no slot); three-way tie at 0.9 -> lower indices 1, 2
    # q1: keeps 0 ("4", 0.8) and 2 ("5", 0.7): 1-1 vote, the higher best score wins -> "4", wrong
    # q2: path 0 early; keeps 1 and 3: every kept answer is None -> no vote
    np.testing.assert_array_equal(r.kept, [[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 0, 1]])
    np.testing.assert_array_equal(r.finished_early, [[1, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]])
    assert r.votes == ["7", "4", None]
    np.testing.assert_array_equal(r.vote_correct, [True, False, False])
    np.testing.assert_allclose(r.kept_accuracy, [2 / 3, 1 / 2, 0])
    # tokens: sum of min(len, 5) + continuations of the kept unfinished paths
    np.testing.assert_array_equal(r.tokens, [3 + 5 + 5 + 5 + 5 + 7, 4 * 5 + 1 + 1, 4 + 5 + 5 + 5 + 4 + 4])
    np.testing.assert_array_equal(r.full_tokens, [33, 24, 31])
    assert r.avg_kept == pytest.approx(7 / 18) and r.cons == pytest.approx(1 / 3)
    assert r.total_tokens == 79 and r.token_reduction == pytest.approx(1 - 79 / 88)
    # an external judge's re-encoding charged per checked prefix (3 + 4 + 3 checked)
    assert replay(HAND, HAND_SCORES, n=4, k=2, prefix_len=5, check_tokens=5).total_tokens == 79 + 5 * 10

    # NaN scores rank last; n < bank size uses the first n paths
    r2 = replay(HAND, [[0, 0, 0, 0], [np.nan, 0.2, 0.7, 0.1], [0, 0, 0, 0]], n=3, k=2, prefix_len=5)
    np.testing.assert_array_equal(r2.kept[1], [0, 1, 1])
    assert r2.votes[1] == "5" and r2.vote_correct[1]
    np.testing.assert_array_equal(r2.full_tokens, [25, 18, 22])
    # k = 1 breaks the q0 tie to the lower sample index
    assert replay(HAND, HAND_SCORES, n=4, k=1, prefix_len=5).kept[0].tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="k <= n"):
        replay(HAND, HAND_SCORES, n=3, k=4, prefix_len=5)


def test_the_score_of_a_finished_path_does_not_enter_the_vote():
    bank = make_bank([("1", [2, 9, 9], ["2", "1", "3"])])  # path 0 finished: votes with score NaN
    r = replay(bank, [[100.0, 0.5, 0.1]], n=3, k=1, prefix_len=5)
    assert r.votes == ["1"]  # "2" (finished, NaN) vs "1" (0.5): the tie goes to the scored answer


def reference_replay(bank, scores, n, k, length):
    """Per problem, with the pipeline's own functions."""
    out = []
    for bp, s in zip(bank.problems, scores):
        early = [p.generated_tokens <= length for p in bp.paths[:n]]
        open_rows = [i for i in range(n) if not early[i]]
        keep = set(top_k(np.asarray(s)[open_rows], open_rows, k)) | {i for i in range(n) if early[i]}
        kept = sorted(keep)
        vote = majority_vote([bp.answers[i] for i in kept], [np.nan if early[i] else s[i] for i in kept])
        tokens = sum(min(p.generated_tokens, length) for p in bp.paths[:n]) + sum(
            bp.paths[i].generated_tokens - length for i in kept if not early[i])
        out.append((kept, vote, tokens))
    return out


def test_vectorised_replay_equals_the_pipeline_functions_on_random_banks():
    rng = random.Random(0)
    for trial in range(25):
        spec = [(str(rng.randrange(3)), [rng.randrange(1, 12) for _ in range(8)],
                 [rng.choice([None, "0", "1", "2"]) for _ in range(8)]) for _ in range(5)]
        bank = make_bank(spec)
        scores = [[rng.choice([0.1, 0.5, 0.5, 0.9, np.nan, -np.inf, np.inf]) for _ in range(8)] for _ in range(5)]
        n, length = rng.randrange(1, 9), rng.randrange(1, 12)
        k = rng.randrange(1, n + 1)
        r = replay(bank, scores, n=n, k=k, prefix_len=length)
        for p, (kept, vote, tokens) in enumerate(reference_replay(bank, scores, n, k, length)):
            assert np.flatnonzero(r.kept[p]).tolist() == kept, (trial, p)
            assert r.votes[p] == vote and r.tokens[p] == tokens, (trial, p)


# ------------------------------------------------------------------------------------ progressive pruning


HAND_SCORES_7 = [[0.0, 0.1, 0.5, 0.9], [0.3, 0.9, 0.1, 0.2], [0.0, 0.1, 0.9, 0.5]]


def test_progressive_replay_on_a_hand_built_bank():
    r = replay_progressive(HAND, {5: HAND_SCORES, 7: HAND_SCORES_7}, [(5, 3), (7, 1)], n=4)
    # stage 0 (L = 5, k = 3): q0, q2: path 0 ended (kept, no slot), paths 1-3 go on; q1: paths 0, 2, 1 (0.8, 0.7, 0.2)
    # stage 1 (L = 7, k = 1): q0: path 3 (0.9); q1: paths 0-2 (length 6) ended by 7: kept unchecked; q2: path 2 (0.9)
    np.testing.assert_array_equal(r.kept, [[1, 0, 0, 1], [1, 1, 1, 0], [1, 0, 1, 0]])
    np.testing.assert_array_equal(r.finished_early, [[1, 0, 0, 0], [1, 1, 1, 0], [1, 0, 0, 0]])
    np.testing.assert_array_equal(r.stage, [[0, 1, 1, 1], [1, 1, 1, 0], [0, 1, 1, 1]])
    assert r.votes == ["7", "5", "1"] and r.vote_correct.all()
    np.testing.assert_allclose(r.kept_accuracy, [1 / 2, 2 / 3, 1 / 2])
    # tokens: every path to min(len, 5), stage-0 survivors from 5 to min(len, 7), the last survivor's remainder
    np.testing.assert_array_equal(r.tokens, [3 + 3 * 5 + 3 * 2 + (8 - 7), 4 * 5 + 3 * (6 - 5),
                                             4 + 3 * 5 + 3 * 2 + (9 - 7)])
    assert r.total_tokens == 75 and r.k == 1 and r.prefix_len == 5 and r.cons == 1.0
    assert r.summary()["schedule"] == "4→3@5→1@7" and r.summary()["stages"] == 2


def test_a_path_that_ends_between_checks_votes_with_its_last_score():
    bank = make_bank([("1", [9, 6, 9], ["2", "1", "3"])])
    # L = 5 keeps paths 1 (0.8) and 0 (0.5); path 1 ends at 6, before the check at 7: kept, no slot,
    # and in the 1-1 vote against path 0 ("2", 0.5 at L = 7) its score at L = 5 (0.8) wins the tie
    r = replay_progressive(bank, {5: [[0.5, 0.8, 0.1]], 7: [[0.5, 0.0, 0.0]]}, [(5, 2), (7, 1)], n=3)
    assert r.kept[0].tolist() == [True, True, False] and r.votes == ["1"]
    assert r.tokens[0] == 3 * 5 + 2 + 1 + 2  # prefixes; 5 -> 7 for path 0, 5 -> 6 for path 1; path 0's 7 -> 9


def test_one_stage_is_replay():
    for k, length in [(1, 5), (2, 5), (3, 7), (4, 2)]:
        a = replay(HAND, HAND_SCORES, n=4, k=k, prefix_len=length)
        b = replay_progressive(HAND, {length: HAND_SCORES}, [(length, k)], n=4)
        for name in ("kept", "finished_early", "kept_accuracy", "vote_correct", "tokens", "full_tokens"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert a.votes == b.votes and (a.n, a.k, a.prefix_len) == (b.n, b.k, b.prefix_len)
        assert {key: b.summary()[key] for key in a.summary()} == a.summary()


def reference_progressive(bank, scores_by_len, schedule, n):
    """Per problem, stage by stage, with the pipeline's own top_k."""
    out = []
    for p, bp in enumerate(bank.problems):
        lens = [path.generated_tokens for path in bp.paths[:n]]
        running, kept, last, tokens, previous = list(range(n)), set(), {}, 0, 0
        for length, k in schedule:
            tokens += sum(min(lens[i], length) - previous for i in running)
            kept |= {i for i in running if lens[i] <= length}
            open_rows = [i for i in running if lens[i] > length]
            s = np.asarray(scores_by_len[length][p], dtype=float)
            last.update({i: s[i] for i in open_rows})
            running, previous = top_k(s[open_rows], open_rows, k), length
        tokens += sum(lens[i] - previous for i in running)
        kept = sorted(kept | set(running))
        out.append((kept, majority_vote([bp.answers[i] for i in kept], [last.get(i, np.nan) for i in kept]), tokens))
    return out


def test_progressive_replay_equals_a_stage_by_stage_reference_on_random_banks():
    rng = random.Random(1)
    for trial in range(40):
        spec = [(str(rng.randrange(3)), [rng.randrange(1, 16) for _ in range(8)],
                 [rng.choice([None, "0", "1", "2"]) for _ in range(8)]) for _ in range(5)]
        bank = make_bank(spec)
        n = rng.randrange(1, 9)
        lengths = sorted(rng.sample(range(1, 14), rng.randrange(1, 4)))
        ks = sorted((rng.randrange(1, n + 1) for _ in lengths), reverse=True)
        schedule = list(zip(lengths, ks))
        scores = {L: [[rng.choice([0.1, 0.5, 0.5, 0.9, np.nan, np.inf]) for _ in range(8)] for _ in range(5)]
                  for L in lengths}
        r = replay_progressive(bank, scores, schedule, n=n)
        for p, (kept, vote, tokens) in enumerate(reference_progressive(bank, scores, schedule, n)):
            assert np.flatnonzero(r.kept[p]).tolist() == kept, (trial, p)
            assert r.votes[p] == vote and r.tokens[p] == tokens, (trial, p)


def test_progressive_scores_from_a_callable_see_the_checked_paths():
    seen = {}

    def scores(length, checked):
        seen[length] = checked.tolist()
        return HAND_SCORES if length == 5 else HAND_SCORES_7

    a = replay_progressive(HAND, scores, [(5, 3), (7, 1)], n=4)
    b = replay_progressive(HAND, {5: HAND_SCORES, 7: HAND_SCORES_7}, [(5, 3), (7, 1)], n=4)
    assert a.votes == b.votes and (a.tokens == b.tokens).all()
    assert seen[5] == [[0, 1, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]]
    assert seen[7] == [[0, 1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 1]]


@pytest.mark.parametrize("schedule, match", [
    ([], "empty"), ([(5, 2), (5, 1)], "increase, got 5 after 5"), ([(5, 2), (4, 1)], "got 4 after 5"),
    ([(5, 1), (7, 2)], "k=2 after 1"), ([(5, 5)], "k=5"), ([(0, 2)], "prefix_len must be >= 1, got 0"),
    ([(5, 0)], "k=0"), ([5, 2], "pairs"),
])
def test_bad_schedules_are_named(schedule, match):
    with pytest.raises(ValueError, match=match):
        check_schedule(schedule, 4)
    with pytest.raises(ValueError, match=match):
        replay_progressive(HAND, {5: HAND_SCORES}, schedule, n=4)


def test_progressive_replay_names_missing_scores():
    with pytest.raises(ValueError, match=r"no scores for prefix lengths \[7\]"):
        replay_progressive(HAND, {5: HAND_SCORES}, [(5, 2), (7, 1)], n=4)


def test_no_pruning_baseline_and_pass_at_k():
    base = no_pruning(HAND, n=4)
    np.testing.assert_allclose(base.accuracy, [0.5, 0.5, 0.25])
    assert base.votes == ["7", "4", "1"]  # q1: 2-2 tie -> the answer seen first
    np.testing.assert_array_equal(base.vote_correct, [True, False, True])
    assert base.avg == pytest.approx(5 / 12) and base.total_tokens == 88
    # replay with k = n keeps everything at the full cost
    full = replay(HAND, HAND_SCORES, n=4, k=4, prefix_len=5)
    assert full.kept.all() and full.total_tokens == base.total_tokens and full.avg_kept == pytest.approx(base.avg)

    for n, c, k in [(5, 2, 1), (5, 2, 3), (6, 0, 2), (6, 6, 1), (7, 3, 4), (8, 1, 8)]:
        subsets = list(itertools.combinations([1] * c + [0] * (n - c), k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets)), (n, c, k)
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert bank_pass_at_k(HAND, n=4, k=2) == pytest.approx(np.mean([1 - 1 / 6, 1 - 1 / 6, 1 - 3 / 6]))


def test_bootstrap_is_reproducible_and_covers_the_mean():
    values = np.random.default_rng(1).random(40)
    a, b = bootstrap_ci(values, seed=3), bootstrap_ci(values, seed=3)
    assert a == b and a != bootstrap_ci(values, seed=4)
    assert a.low < values.mean() < a.high and a.estimate == pytest.approx(values.mean())
    assert a.high - a.low < bootstrap_ci(values, level=0.99, seed=3).high - bootstrap_ci(values, level=0.99, seed=3).low
    same = paired_bootstrap_ci(values, values)
    assert (same.estimate, same.low, same.high, same.p_value) == (0, 0, 0, 1.0)
    better = paired_bootstrap_ci(values + 0.1, values + np.random.default_rng(2).normal(0, 0.01, 40))
    assert better.low > 0 and better.p_value < 0.01
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, np.nan])



def test_bootstrap_interval_matches_normal_theory_on_a_large_sample():
    """For 2,000 values the percentile interval of a mean is close to mean ± 1.96·sd/√n; the paired
    interval of a - b is that of the differences (problems resampled jointly), not of two
    independent samples, so it is narrower when a and b are correlated."""
    rng = np.random.default_rng(5)
    values = rng.random(2000)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    ci = bootstrap_ci(values, n_boot=4000, seed=0)
    assert ci.low == pytest.approx(values.mean() - half, abs=0.15 * half)
    assert ci.high == pytest.approx(values.mean() + half, abs=0.15 * half)
    b = values + rng.normal(0, 0.05, values.size)
    paired = paired_bootstrap_ci(values, b, n_boot=4000, seed=0)
    d = values - b
    half_d = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
    assert paired.high - paired.low == pytest.approx(2 * half_d, rel=0.15)
    assert paired.high - paired.low < 0.5 * (ci.high - ci.low)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(values, level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_ci(values, n_boot=0)

def test_signal_auroc_on_a_bank():
    perfect = [np.where(bp.correct, 1.0, 0.0) for bp in HAND.problems]
    res = signal_auroc(HAND, perfect)
    assert res.pooled == 1.0 and res.within == 1.0 and res.n_groups == 3 and res.n_scored == 12
    flipped = [-s for s in perfect]
    assert signal_auroc(HAND, flipped).within == 0.0
    with_nan = [np.where(np.arange(4) == 0, np.nan, s) for s in perfect]
    assert signal_auroc(HAND, with_nan).n_scored == 9


# ------------------------------------------------------------------------------------ online == replay


PARAMS = SamplingParams(temperature=1.0, max_new_tokens=30, seed=5, logprobs=3)


def test_replay_gives_the_online_pipeline_numbers(tiny_model_dir, tmp_path):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    engine = HFEngine(model, tok, batch_size=32)
    problems = [Problem(id=f"p{i}", prompt=q, answer=a, kind="toy", source="test")
                for i, (q, a) in enumerate([("12+3", "1"), ("ab", "2"), ("xyz", "3")])]
    prompts = [tok(p.prompt)["input_ids"] for p in problems]
    bank = build_bank(engine, problems, prompts, 6, PARAMS, tmp_path / "bank", progress=False)
    for name, length, k in [("mean_logprob", 4, 2), ("random", 7, 3)]:
        signal = make_signal(name)
        online = run_pipeline(engine, problems, prompts, signal, n=6, k=k, prefix_len=length, params=PARAMS)
        r = replay(bank, score_bank(bank, signal, length), n=6, k=k, prefix_len=length)
        for p, res in enumerate(online.problems):
            assert [rec.kept for rec in res.records] == r.kept[p].tolist(), (name, p)
            assert res.vote == r.votes[p] and res.vote_correct == r.vote_correct[p]
            assert res.tokens == r.tokens[p]
        assert online.avg_kept == pytest.approx(r.avg_kept) and online.tokens == r.total_tokens


def test_progressive_replay_gives_the_online_pipeline_numbers(tiny_model_dir, tmp_path):
    """A three-stage schedule online (HF engine: advance, Check on the grown cache) and replayed on the
    bank of the same seeded paths: the same kept paths, stages, votes and tokens, for a statistics
    signal, a control and STOP reading the cache."""
    from stoplib.signals.type4 import StopSignal
    from stoplib.stop import StopConfig, StopScorer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    engine = HFEngine(model, tok, batch_size=8)  # groups of one problem; stages pack several
    problems = [Problem(id=f"p{i}", prompt=q, answer=a, kind="toy", source="test")
                for i, (q, a) in enumerate([("12+3", "1"), ("ab", "2"), ("xyz", "3"), ("7", "4")])]
    prompts = [tok(p.prompt)["input_ids"] for p in problems]
    bank = build_bank(engine, problems, prompts, 6, PARAMS, tmp_path / "bank", progress=False)
    scorer = StopScorer(model, tok, StopConfig(num_tokens=2, lora_r=4))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in scorer._lora_params:
            p.normal_(0, 0.3)
    schedule = [(4, 4), (9, 2), (15, 1)]
    later_early = 0
    for signal in (make_signal("mean_logprob"), make_signal("random"), StopSignal(scorer)):
        online = run_pipeline(engine, problems, prompts, signal, n=6, schedule=schedule, params=PARAMS)
        r = replay_progressive(bank, {L: score_bank(bank, signal, L) for L, _ in schedule}, schedule, n=6)
        for p, res in enumerate(online.problems):
            assert [rec.kept for rec in res.records] == r.kept[p].tolist(), (signal.name, p)
            assert [rec.stage for rec in res.records] == r.stage[p].tolist(), (signal.name, p)
            assert [rec.finished_early for rec in res.records] == r.finished_early[p].tolist(), (signal.name, p)
            assert res.vote == r.votes[p] and res.vote_correct == r.vote_correct[p]
            assert res.tokens == r.tokens[p], (signal.name, p)
            later_early += sum(rec.finished_early and rec.stage > 0 for rec in res.records)
        assert online.avg_kept == pytest.approx(r.avg_kept) and online.tokens == r.total_tokens
    assert later_early > 0  # some paths ended between two checks


def test_replay_grid_and_score_bank_for_set_dependent_signals(tiny_model_dir, tmp_path):
    bank = make_bank([("1", [3, 8, 8, 9], ["1", "1", "2", "1"]), ("2", [9, 9, 2, 9], ["2", "1", "2", None])])
    decode = lambda ids: " ".join(str(t) for t in ids)  # noqa: E731
    signal = make_signal("slimsc_jaccard", decode=decode)
    scores = score_bank(bank, signal, 4, n=3)
    assert np.isnan(scores[0][0]) and np.isnan(scores[1][2]) and len(scores[0]) == 3
    df = replay_grid(bank, lambda n, length: score_bank(bank, signal, length, n=n), ns=[2, 4], ks=[1, 2, 4],
                     prefix_lens=[2, 4])
    assert len(df) == 2 * (2 + 3)  # k <= n only
    assert {"avg_kept", "cons", "tokens", "token_reduction", "avg_full", "cons_full", "pass_at_k"} <= set(df.columns)
    row = df[(df.n == 4) & (df.k == 4) & (df.prefix_len == 2)].iloc[0]
    assert row.token_reduction == 0 and row.avg_kept == pytest.approx(row.avg_full)
    assert bank_arrays(bank).n_paths == 4


def test_votes_count_equivalent_answers_as_one():
    from stoplib.grading import majority_vote

    # "33", "033" and "33." are one answer for math: 3 votes against 2
    assert majority_vote(["12", "33", "12", "033", "33."], kind="math") == "33"
    assert majority_vote(["12", "33", "12", "033", "33."]) == "12"  # as raw strings: 2 vs 1 vs 1 vs 1
    assert majority_vote(["\\frac{1}{2}", "0.5", "1"], kind="math") == "\\frac{1}{2}"
    assert majority_vote(["", None, "12"], kind="math") == "12"  # an empty answer never wins
    assert majority_vote([None, None], kind="integer") is None


def test_replay_votes_use_the_problem_kind():
    from stoplib.metrics import BankArrays, no_pruning

    arrays = BankArrays(problem_ids=["p"], lengths=np.array([[5, 5, 5, 5, 5]]),
                        finished=np.ones((1, 5), bool), correct=np.array([[False, True, False, True, True]]),
                        answers=[["12", "33", "12", "033", "33."]], kinds=["math"])
    result = no_pruning(arrays, n=5)
    assert result.votes == ["33"] and result.vote_correct[0]
