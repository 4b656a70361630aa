"""A bank stores paths sampled with or without top log-probabilities (``SamplingParams.logprobs``)."""

from __future__ import annotations

import pytest

from stoplib import stages
from stoplib.bank import build_bank
from stoplib.config import resolve


@pytest.mark.parametrize("logprobs", [
    3,
    pytest.param(0, marks=pytest.mark.xfail(strict=True, raises=ValueError,
                                            reason="bank._pack reshapes the empty (T, 0) top-k arrays with (-1, 0), "
                                            "which numpy cannot infer")),
])
def test_a_bank_round_trips_the_sampled_paths(tmp_path, logprobs):
    config = resolve("tiny")
    engine = stages.engine_for(config)
    problems = stages.eval_problems(config)[:1]
    prompts = stages.prompts_for(problems, engine.tokenizer, config)
    params = config.sampling.with_(logprobs=logprobs)
    paths = engine.generate(prompts, 2, params)[0]
    assert all(p.top_logprobs.shape == (p.generated_tokens, logprobs) for p in paths)
    bank = build_bank(engine, problems, prompts, 2, params, tmp_path / "bank", progress=False)
    assert [p.token_ids for p in bank.problems[0].paths] == [p.token_ids for p in paths]
    assert [p.top_logprobs.shape for p in bank.problems[0].paths] == [p.top_logprobs.shape for p in paths]
