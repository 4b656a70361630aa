"""A bank stores paths sampled with or without top log-probabilities (``SamplingParams.logprobs``)."""

from __future__ import annotations

import numpy as np
import pytest

from stoplib import stages
from stoplib.bank import build_bank, load_bank
from stoplib.config import resolve
from stoplib.metrics import score_bank
from stoplib.signals import make_signal


def sample(logprobs, tmp_path):
    """Two paths of one problem sampled with ``logprobs`` top log-probabilities, and their bank."""
    config = resolve("tiny")
    engine = stages.engine_for(config)
    problems = stages.eval_problems(config)[:1]
    prompts = stages.prompts_for(problems, engine.tokenizer, config)
    params = config.sampling.with_(logprobs=logprobs)
    paths = engine.generate(prompts, 2, params)[0]
    bank = build_bank(engine, problems, prompts, 2, params, tmp_path / "bank", progress=False)
    return paths, bank, problems


@pytest.mark.parametrize("logprobs", [3, 0])
def test_a_bank_round_trips_the_sampled_paths(tmp_path, logprobs):
    paths, bank, problems = sample(logprobs, tmp_path)
    assert all(p.top_logprobs.shape == (p.generated_tokens, logprobs) for p in paths)
    for stored in (bank, load_bank(tmp_path / "bank", problems)):
        got = stored.problems[0].paths
        assert [p.token_ids for p in got] == [p.token_ids for p in paths]
        assert [p.top_logprobs.shape for p in got] == [p.top_logprobs.shape for p in paths]
        assert [p.top_ids.shape for p in got] == [(p.generated_tokens, logprobs) for p in paths]
        for p, q in zip(got, paths):
            np.testing.assert_array_equal(p.logprobs, np.asarray(q.logprobs, np.float32))
            np.testing.assert_array_equal(p.entropies, np.asarray(q.entropies, np.float32))
            np.testing.assert_array_equal(p.top_ids, q.top_ids)
            np.testing.assert_allclose(p.top_logprobs, q.top_logprobs, rtol=1e-2, atol=1e-2)  # float16 on disk


def test_without_top_log_probabilities_the_signals_that_need_them_say_so(tmp_path):
    """logprobs=0 records no top log-probabilities: the chosen-token and entropy signals still score
    the bank, the top-k ones raise an error that names what is missing."""
    _, bank, _ = sample(0, tmp_path)
    for name in ("mean_logprob", "min_logprob", "perplexity", "mean_entropy"):
        assert np.isfinite(np.concatenate(score_bank(bank, make_signal(name), 4))).any(), name
    for name in ("deepconf_mean", "deepconf_lowest_group", "deepconf_bottom10", "deepconf_tail"):
        with pytest.raises(ValueError, match="top-k log-probabilities"):
            score_bank(bank, make_signal(name), 4)
    with pytest.raises(ValueError, match="top-k log-probabilities"):
        score_bank(bank, make_signal("self_certainty", vocab_size=1000), 4)
