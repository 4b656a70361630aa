"""The HF engine on a tiny Llama saved and reloaded with from_pretrained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stoplib.engines.base import Engine, SamplingParams, keep_all
from stoplib.engines.hf import HFEngine


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return HFEngine(tiny_model_dir, batch_size=64)


@pytest.fixture(scope="module")
def prompts(engine):
    tok = engine.tokenizer
    texts = ["1+2=", "ab cd ef gh ij kl", "x"]  # different lengths -> left padding
    return [tok(t)["input_ids"] for t in texts]


SAMPLED = SamplingParams(temperature=1.0, top_p=0.95, top_k=40, max_new_tokens=48, seed=3, logprobs=5)
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=48, seed=3, logprobs=5)


def test_engine_satisfies_protocol(engine):
    assert isinstance(engine, Engine)


@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_resume_equals_uninterrupted(engine, prompts, params):
    full = engine.generate(prompts, 4, params)
    launch = engine.launch(prompts, 4, 12, params)
    for group in launch.paths:
        for path in group:
            assert path.generated_tokens == 12 or path.finished
    resumed = engine.resume(launch, keep_all(launch))
    for group_full, group_res in zip(full, resumed):
        for a, b in zip(group_full, group_res):
            assert a.token_ids == b.token_ids
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
            assert a.finish_reason == b.finish_reason


def test_selected_rows_match_rows_alone(engine, prompts):
    launch = engine.launch(prompts, 4, 10, SAMPLED)
    keep = [[3, 1], [0], [2, 0]]
    together = engine.resume(launch, keep)
    for p, chosen in enumerate(keep):
        for j, i in enumerate(chosen):
            alone = engine.launch([prompts[p]], 4, 10, SAMPLED)
            (path,) = engine.resume(alone, [[i]])[0]
            assert path.token_ids == together[p][j].token_ids
            assert path.sample_index == i


def test_batch_size_does_not_change_paths(tiny_model_dir, engine, prompts):
    small = HFEngine(tiny_model_dir, batch_size=3)
    a = engine.generate(prompts, 5, SAMPLED)
    b = small.generate(prompts, 5, SAMPLED)
    assert [[p.token_ids for p in g] for g in a] == [[p.token_ids for p in g] for g in b]


def test_seed_controls_sampling(engine, prompts):
    a = engine.generate(prompts[:1], 6, SAMPLED)[0]
    b = engine.generate(prompts[:1], 6, SAMPLED)[0]
    c = engine.generate(prompts[:1], 6, SAMPLED.with_(seed=4))[0]
    assert [p.token_ids for p in a] == [p.token_ids for p in b]
    assert [p.token_ids for p in a] != [p.token_ids for p in c]
    assert len({tuple(p.token_ids) for p in a}) > 1  # samples of one prompt differ


def test_stats_match_direct_forward(engine, prompts):
    paths = engine.generate(prompts, 2, SAMPLED)
    for group in paths:
        for path in group:
            ids = torch.tensor([path.prompt_ids + path.token_ids])
            with torch.no_grad():
                logits = engine.model(input_ids=ids).logits[0].float()
            start = len(path.prompt_ids) - 1
            steps = logits[start : start + path.generated_tokens]
            logp = torch.log_softmax(steps, -1)
            chosen = logp.gather(1, torch.tensor(path.token_ids).unsqueeze(1)).squeeze(1)
            entropy = -(logp.exp() * logp).sum(-1)
            np.testing.assert_allclose(path.logprobs, chosen.numpy(), atol=1e-4)
            np.testing.assert_allclose(path.entropies, entropy.numpy(), atol=1e-4)
            top = torch.topk(logp, 5, dim=-1)
            np.testing.assert_allclose(path.top_logprobs, top.values.numpy(), atol=1e-4)
            assert path.top_logprobs.shape == (path.generated_tokens, 5)


def test_token_accounting(engine, prompts):
    launch = engine.launch(prompts, 3, 8, SAMPLED)
    prefix = {(p.prompt_index, p.sample_index): p.generated_tokens for p in launch.flat()}
    resumed = engine.resume(launch, [[0], [1, 2], []])
    for group in resumed:
        for path in group:
            assert path.prefix_tokens == prefix[(path.prompt_index, path.sample_index)]
            assert path.prefix_tokens + path.continuation_tokens == path.generated_tokens
            assert path.prompt_tokens == len(path.prompt_ids)
            assert path.finished
            assert path.generated_tokens <= SAMPLED.max_new_tokens
            if path.finish_reason == "stop":
                assert path.token_ids[-1] in engine.eos_ids


def test_prefix_view_of_complete_path(engine, prompts):
    (group,) = engine.generate(prompts[:1], 2, SAMPLED)
    path = group[0]
    view = path.prefix(5)
    assert view.token_ids == path.token_ids[:5] and len(view.logprobs) == min(5, path.generated_tokens)


def test_bad_input_is_rejected(engine, prompts):
    with pytest.raises(ValueError, match="empty"):
        engine.generate([[]], 1, SAMPLED)
    with pytest.raises(TypeError, match="token ids"):
        engine.generate(["some text"], 1, SAMPLED)
    launch = engine.launch(prompts, 2, 4, SAMPLED)
    with pytest.raises(ValueError, match="unknown sample"):
        engine.resume(launch, [[5], [], []])
    with pytest.raises(ValueError, match="groups"):
        engine.resume(launch, [[0]])
    engine.resume(launch, [[0], [], []])
    with pytest.raises(ValueError, match="already resumed"):
        engine.resume(launch, [[0], [], []])
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
