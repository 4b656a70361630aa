"""The online Launch -> Check -> Resume pipeline on a tiny Llama."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stoplib.engines.base import SamplingParams
from stoplib.engines.hf import HFEngine, load_model_and_tokenizer
from stoplib.engines.base import Launch, ReasoningPath
from stoplib.grading import majority_vote
from stoplib.pipeline import run_pipeline
from stoplib.problems import Problem
from stoplib.signals import make_signal, top_k
from stoplib.signals.type4 import StopSignal
from stoplib.stop import StopConfig, StopScorer

PARAMS = SamplingParams(temperature=1.0, max_new_tokens=40, seed=11, logprobs=3)


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    engine = HFEngine(model, tok, batch_size=16)
    problems = [Problem(id=f"p{i}", prompt=q, answer="1", kind="toy", source="test") for i, q in enumerate(["12+3", "ab", "xyz"])]
    prompts = [tok(p.prompt)["input_ids"] for p in problems]
    return engine, problems, prompts


def test_pipeline_keeps_top_k_and_accounts_tokens(setup):
    engine, problems, prompts = setup
    signal = make_signal("mean_logprob")
    result = run_pipeline(engine, problems, prompts, signal, n=6, k=2, prefix_len=5, params=PARAMS)
    full = engine.generate(prompts, 6, PARAMS)  # same seed: the paths the pipeline sampled
    for problem_result, paths in zip(result.problems, full):
        records = problem_result.records
        early = [r for r in records if r.finished_early]
        assert sum(r.kept for r in records) == len(early) + min(2, len(records) - len(early))
        open_recs = [r for r in records if not r.finished_early]
        prefixes = [paths[r.sample_index].prefix(5) for r in open_recs]
        expected = top_k(signal.score(prefixes), [r.sample_index for r in open_recs], 2)
        assert sorted(r.sample_index for r in open_recs if r.kept) == sorted(expected)
        for r in records:  # kept paths cost their full length, pruned ones their prefix
            full_len = paths[r.sample_index].generated_tokens
            assert r.generated_tokens == (full_len if r.kept else min(5, full_len))
        assert problem_result.tokens == sum(r.generated_tokens for r in records)
    assert result.tokens == sum(p.tokens for p in result.problems)


def test_stop_check_from_cache_equals_reencoding(setup):
    engine, problems, prompts = setup
    scorer = StopScorer(engine.model, engine.tokenizer, StopConfig(num_tokens=2, lora_r=4))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in scorer._lora_params:
            p.normal_(0, 0.3)
    cached = run_pipeline(engine, problems, prompts, StopSignal(scorer), n=5, k=2, prefix_len=6, params=PARAMS)

    class Reencode(StopSignal):  # the same scorer, without access to the engine's cache
        def score_launch(self, engine, launch):
            return None

    reencoded = run_pipeline(engine, problems, prompts, Reencode(scorer), n=5, k=2, prefix_len=6, params=PARAMS)
    for a, b in zip(cached.problems, reencoded.problems):
        np.testing.assert_allclose([r.score for r in a.records], [r.score for r in b.records], atol=1e-5)
        assert [r.kept for r in a.records] == [r.kept for r in b.records]


def test_majority_vote_and_bad_k(setup):
    assert majority_vote(["3", "4", "3", None]) == "3"
    assert majority_vote(["3", "4"], [0.1, 0.9]) == "4"  # tie -> higher best score
    assert majority_vote([None, None]) is None
    engine, problems, prompts = setup
    with pytest.raises(ValueError, match="k <= n"):
        run_pipeline(engine, problems, prompts, make_signal("random"), n=2, k=3, prefix_len=4, params=PARAMS)


def test_groups_of_problems_give_the_same_result(setup):
    """Bounded memory: problems in groups of max_paths_in_flight paths, same records as all at once."""
    from stoplib.pipeline import problem_groups

    engine, problems, prompts = setup
    signal = make_signal("mean_logprob")
    runs = [run_pipeline(engine, problems, prompts, signal, n=6, k=2, prefix_len=5, params=PARAMS,
                         max_paths_in_flight=m) for m in (None, 6, 13, "auto")]
    def records(result):  # NaN scores (paths that ended before L) compare equal through repr
        return [[repr(r) for r in p.records] for p in result.problems]

    for other in runs[1:]:
        assert records(other) == records(runs[0])
        assert [(p.vote, p.tokens) for p in other.problems] == [(p.vote, p.tokens) for p in runs[0].problems]
    assert [list(g) for g in problem_groups(5, 6, 13)] == [[0, 1], [2, 3], [4]]
    assert [list(g) for g in problem_groups(3, 6, 4)] == [[0], [1], [2]]  # at least one problem per group
    assert [list(g) for g in problem_groups(3, 6, None)] == [[0, 1, 2]]


def test_pooled_resume_gives_the_same_result(setup):
    """Kept paths of several groups resumed together (resume_rows): same records and tokens as each
    group on its own, and as the uninterrupted paths."""
    engine, problems, prompts = setup
    signal = make_signal("mean_logprob")
    runs = [run_pipeline(engine, problems, prompts, signal, n=6, k=2, prefix_len=5, params=PARAMS,
                         max_paths_in_flight=6, resume_rows=rows) for rows in (None, 3, "auto")]
    for other in runs[1:]:
        assert [[repr(r) for r in p.records] for p in other.problems] == \
            [[repr(r) for r in p.records] for p in runs[0].problems]
    full = engine.generate(prompts, 6, PARAMS)
    for problem_result, paths in zip(runs[-1].problems, full):
        for r in problem_result.records:
            assert r.generated_tokens == (paths[r.sample_index].generated_tokens if r.kept else
                                          min(5, paths[r.sample_index].generated_tokens))


def test_resume_frees_discarded_paths_before_continuing(setup, monkeypatch):
    """Every chunk drops its discarded rows before any kept row decodes (the paper frees at Check)."""
    engine, problems, prompts = setup
    events = []
    original_select, original_decode = HFEngine._select, HFEngine._decode
    monkeypatch.setattr(HFEngine, "_select", lambda self, c, rows: (events.append("select"),
                                                                    original_select(self, c, rows)))
    monkeypatch.setattr(HFEngine, "_decode", lambda self, c, t, p: (events.append("decode"),
                                                                    original_decode(self, c, t, p)))
    small = HFEngine(engine.model, engine.tokenizer, batch_size=4, compact=False)
    launch = small.launch(prompts, 6, 5, PARAMS)
    events.clear()
    small.resume(launch, [[0, 1], [2], [5]])
    first_decode = events.index("decode")
    assert events[:first_decode].count("select") >= 3 and "select" not in events[first_decode:]


SCHEDULE = [(4, 4), (9, 2), (14, 1)]


def _random_stop(engine):
    scorer = StopScorer(engine.model, engine.tokenizer, StopConfig(num_tokens=2, lora_r=4))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in scorer._lora_params:
            p.normal_(0, 0.3)
    return scorer


def test_progressive_stop_check_from_the_grown_cache_equals_reencoding(setup):
    """At every stage STOP reads the advanced (grown, repacked) cache: the scores of re-encoding the prefix."""
    engine, problems, prompts = setup
    scorer = _random_stop(engine)
    cached = run_pipeline(engine, problems, prompts, StopSignal(scorer), n=6, schedule=SCHEDULE, params=PARAMS)

    class Reencode(StopSignal):
        def score_launch(self, engine, launch):
            return None

    reencoded = run_pipeline(engine, problems, prompts, Reencode(scorer), n=6, schedule=SCHEDULE, params=PARAMS)
    for a, b in zip(cached.problems, reencoded.problems):
        np.testing.assert_allclose([r.score for r in a.records], [r.score for r in b.records], atol=1e-5)
        assert [(r.kept, r.stage) for r in a.records] == [(r.kept, r.stage) for r in b.records]
    assert {r.stage for p in cached.problems for r in p.records} == {0, 1, 2}


def test_progressive_pipeline_follows_the_schedule(setup):
    """Each stage keeps its k among the paths still open; a path costs what it generated before it
    was dropped or finished; groups and pooling change nothing; one stage is the plain pipeline."""
    engine, problems, prompts = setup
    signal = make_signal("mean_logprob")
    runs = [run_pipeline(engine, problems, prompts, signal, n=6, schedule=SCHEDULE, params=PARAMS,
                         max_paths_in_flight=m, resume_rows=rows)
            for m, rows in ((None, None), (6, 3), ("auto", "auto"))]
    for other in runs[1:]:
        assert [[repr(r) for r in p.records] for p in other.problems] == \
            [[repr(r) for r in p.records] for p in runs[0].problems]
    full = engine.generate(prompts, 6, PARAMS)
    for res, paths in zip(runs[0].problems, full):
        for stage, (length, k) in enumerate(SCHEDULE):
            reached = [r for r in res.records if r.stage >= stage]
            go_on = [r for r in reached if r.stage > stage or (r.kept and not r.finished_early)]
            checked = [r for r in reached if not (r.stage == stage and r.finished_early)]
            assert len(go_on) == min(k, len(checked))
            if checked:  # the survivors are the top k by mean log-prob of the prefix at this stage's L
                prefixes = [paths[r.sample_index].prefix(length) for r in checked]
                expected = top_k(signal.score(prefixes), [r.sample_index for r in checked], k)
                assert sorted(r.sample_index for r in go_on) == sorted(expected)
        for r in res.records:
            full_len = paths[r.sample_index].generated_tokens
            assert r.generated_tokens == (full_len if r.kept else min(SCHEDULE[r.stage][0], full_len))
    single = run_pipeline(engine, problems, prompts, signal, n=6, schedule=[(5, 2)], params=PARAMS)
    plain = run_pipeline(engine, problems, prompts, signal, n=6, k=2, prefix_len=5, params=PARAMS)
    assert [[repr(r) for r in p.records] for p in single.problems] == \
        [[repr(r) for r in p.records] for p in plain.problems]


def test_bad_schedules_in_the_pipeline(setup):
    engine, problems, prompts = setup
    signal = make_signal("random")
    with pytest.raises(ValueError, match="not both"):
        run_pipeline(engine, problems, prompts, signal, n=6, k=2, prefix_len=4, schedule=SCHEDULE, params=PARAMS)
    with pytest.raises(ValueError, match="or a schedule"):
        run_pipeline(engine, problems, prompts, signal, n=6, params=PARAMS)
    with pytest.raises(ValueError, match="k=3 after 2"):
        run_pipeline(engine, problems, prompts, signal, n=6, schedule=[(4, 2), (8, 3)], params=PARAMS)
    with pytest.raises(ValueError, match="prefix_len=40 must be in"):
        run_pipeline(engine, problems, prompts, signal, n=6, schedule=[(4, 2), (40, 1)], params=PARAMS)
    with pytest.raises(ValueError, match="scripted engine cannot pause a resumed path again"):
        run_pipeline(ScriptedEngine(["x"]), problems, prompts, signal, n=6, schedule=SCHEDULE, params=PARAMS)


class ScriptedEngine:
    """An engine whose paths are fixed texts that all end before Check (a test double of the model)."""

    name = "scripted"

    def __init__(self, texts):
        self.texts = texts
        self.tokenizer = self

    def decode(self, ids, skip_special_tokens=True):
        return self.texts[ids[0]]

    def launch(self, prompts, n, prefix_len, params):
        paths = [[ReasoningPath(p, i, list(prompt), token_ids=[i], finish_reason="stop") for i in range(n)]
                 for p, prompt in enumerate(prompts)]
        return Launch(paths=paths, params=params, prefix_len=prefix_len, state=None)

    def resume(self, launch, keep):
        return [[] for _ in keep]


def test_online_vote_counts_equivalent_answers_as_one():
    """"033", "33" and "33.0" are one answer (3 votes) against "12" (2 votes); as raw strings "12" won."""
    texts = ["\\boxed{033}", "\\boxed{12}", "\\boxed{33}", "\\boxed{12}", "\\boxed{33.0}"]
    problem = Problem(id="q", prompt="?", answer="33", kind="math", source="test")
    result = run_pipeline(ScriptedEngine(texts), [problem], [[1, 2]], make_signal("random"), n=5, k=2,
                          prefix_len=4, params=PARAMS, max_paths_in_flight=None)
    (only,) = result.problems
    assert all(r.kept for r in only.records) and [r.answer for r in only.records] == ["033", "12", "33", "12", "33.0"]
    assert only.vote == "033" and only.vote_correct


def test_auto_keep_runs_the_laws_recipe(setup):
    from stoplib.scaling import ScalingCoefficients, recommend_retention

    engine, problems, prompts = setup
    signal = make_signal("mean_logprob")
    law = ScalingCoefficients(a=2.0, b=0.5, c=0.0, d=0.0)  # γ⁻¹ = 2·sqrt(C/1024): γ* = 1/4 at C = 4,096
    result = run_pipeline(engine, problems, prompts, signal, n=8, k="auto", prefix_len=5, params=PARAMS,
                          budget=4096, task_len=30, law=law)
    plan = recommend_retention(4096, 5, 30, n_max=8, coeffs=law)
    assert result.plan == plan and (plan["n"], plan["k"]) == (8, 2)  # N capped at 8, k = γ*N
    fixed = run_pipeline(engine, problems, prompts, signal, n=8, k=2, prefix_len=5, params=PARAMS)
    assert [[(r.sample_index, r.kept, r.generated_tokens) for r in p.records] for p in result.problems] == \
        [[(r.sample_index, r.kept, r.generated_tokens) for r in p.records] for p in fixed.problems]
    assert fixed.plan is None


def test_auto_keep_names_what_is_missing(setup):
    engine, problems, prompts = setup
    signal = make_signal("mean_logprob")
    run = lambda **kw: run_pipeline(engine, problems, prompts, signal, n=8, prefix_len=5, params=PARAMS, **kw)
    with pytest.raises(ValueError, match="budget"):
        run(k="auto", task_len=30)
    with pytest.raises(ValueError, match="task_len"):
        run(k="auto", budget=4096)
    with pytest.raises(ValueError, match="task_len=4 must exceed prefix_len=5"):
        run(k="auto", budget=4096, task_len=4)
    with pytest.raises(TypeError, match="law must be"):
        run(k="auto", budget=4096, task_len=30, law={"a": 1})
    with pytest.raises(ValueError, match="go with k='auto'"):
        run(k=2, budget=4096)
    with pytest.raises(ValueError, match="k must be an int or 'auto'"):
        run(k="best")
