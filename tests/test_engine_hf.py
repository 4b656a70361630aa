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


# ------------------------------------------------------------------ compaction, seeds, GQA attention, memory


def _tokens(groups):
    return [[p.token_ids for p in g] for g in groups]


def test_compaction_does_not_change_paths(tiny_model_dir, prompts, monkeypatch):
    """Finished rows dropped from the batch: every path is token-identical to lock-step decoding."""
    import stoplib.engines.hf as hf

    params = SamplingParams(temperature=1.5, top_k=0, top_p=1.0, max_new_tokens=40, seed=7, logprobs=3)
    plain = HFEngine(tiny_model_dir, batch_size=24, compact=False)
    compact = HFEngine(tiny_model_dir, batch_size=24)
    selections = []
    original = hf.HFEngine._select
    monkeypatch.setattr(hf.HFEngine, "_select", lambda self, chunk, rows: (selections.append(len(rows)),
                                                                           original(self, chunk, rows)))
    a, b = plain.generate(prompts, 8, params), compact.generate(prompts, 8, params)
    assert _tokens(a) == _tokens(b)
    for ga, gb in zip(a, b):
        for pa, pb in zip(ga, gb):
            np.testing.assert_allclose(pa.logprobs, pb.logprobs, atol=1e-5)
            assert pa.finish_reason == pb.finish_reason and pa.top_ids.tolist() == pb.top_ids.tolist()
    lengths = sorted(p.generated_tokens for g in b for p in g)
    assert lengths[0] < lengths[-1]  # paths of varied length, so that compaction had something to do
    assert len(selections) >= 2  # ... and it did (no selection at all without compaction)
    launch = compact.launch(prompts, 8, 20, params)  # Launch -> Resume with compaction on both sides
    assert _tokens(compact.resume(launch, keep_all(launch))) == _tokens(a)


def test_resume_keeps_only_wanted_rows_and_matches(engine, prompts):
    launch = engine.launch(prompts, 6, 6, SAMPLED)
    keep = [[5, 0], [], [3]]
    resumed = engine.resume(launch, keep)
    full = engine.generate(prompts, 6, SAMPLED)
    for p, chosen in enumerate(keep):
        assert [path.token_ids for path in resumed[p]] == [full[p][i].token_ids for i in chosen]
    assert launch.state is None


def test_seeds_per_prompt(engine, prompts):
    mixed = engine.generate(prompts, 3, SAMPLED, seeds=[5, 9, 5])
    for p, seed in enumerate([5, 9, 5]):
        alone = engine.generate(prompts, 3, SAMPLED.with_(seed=seed))[p]
        assert [x.token_ids for x in mixed[p]] == [x.token_ids for x in alone]
    assert engine.generate(prompts, 3, SAMPLED, seeds=[SAMPLED.seed] * 3)[0][0].token_ids == \
        engine.generate(prompts, 3, SAMPLED)[0][0].token_ids
    with pytest.raises(ValueError, match="seeds"):
        engine.generate(prompts, 3, SAMPLED, seeds=[1, 2])


def test_gqa_attention_is_bit_identical(tiny_model_dir, engine, prompts):
    """The tiny Llama has 4 query / 2 KV heads: the engine switched it to enable_gqa SDPA."""
    from stoplib.engines.hf import GQA_SDPA, load_model_and_tokenizer

    assert engine.model.config._attn_implementation == GQA_SDPA
    reference, _ = load_model_and_tokenizer(tiny_model_dir)
    assert reference.config._attn_implementation == "sdpa"
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = [m(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
               for m in (engine.model, reference)]
    assert torch.equal(out[0], out[1])
    plain = HFEngine(reference, engine.tokenizer, batch_size=64, gqa_sdpa=False)
    assert reference.config._attn_implementation == "sdpa"
    assert _tokens(plain.generate(prompts, 3, SAMPLED)) == _tokens(engine.generate(prompts, 3, SAMPLED))


def test_cache_is_sized_to_its_use(engine, prompts):
    launch = engine.launch(prompts, 4, 9, SAMPLED)
    width = max(len(p) for p in prompts)
    for paths, cache, mask in engine.prefix_states(launch):
        assert cache.get_seq_length() == mask.shape[1] == width + 9
        for layer in cache.layers:
            assert layer.capacity <= width + 9 + 16  # prompt + prefix + Check's slack, not doubled
    engine.release(launch)


def test_a_missing_model_directory_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model directory '\./no/such/model' does not exist"):
        HFEngine("./no/such/model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        HFEngine(str(tmp_path / "absent"))


@pytest.mark.parametrize("growing", [True, False], ids=["growing", "dynamic"])
def test_resume_many_packs_launches_and_matches(tiny_model_dir, prompts, growing):
    """Kept paths of launches of different cache widths resume packed together, token-identical."""
    small = HFEngine(tiny_model_dir, batch_size=5, growing_cache=growing)
    full = small.generate(prompts, 6, SAMPLED)
    launches = [small.launch([prompt], 6, 7, SAMPLED) for prompt in prompts]  # one width each
    keeps = [[[4, 1]], [[0, 5]], [[2]]]
    small.prune(launches[0], keeps[0])
    merged = []
    original = HFEngine._merge
    small._merge = lambda chunks, max_new: (merged.append(len(chunks)), original(small, chunks, max_new))[1]
    resumed = small.resume_many(launches, keeps)
    assert max(merged) >= 2  # rows of different launches decoded in one batch
    for p, (group, keep) in enumerate(zip(resumed, keeps)):
        assert [path.token_ids for path in group[0]] == [full[p][i].token_ids for i in keep[0]]
        for path, i in zip(group[0], keep[0]):
            np.testing.assert_allclose(path.logprobs, full[p][i].logprobs, atol=1e-5)
    assert all(launch.state is None for launch in launches)
    with pytest.raises(ValueError, match="already resumed"):
        small.resume_many(launches[:1], keeps[:1])


@pytest.mark.parametrize("growing", [True, False], ids=["growing", "dynamic"])
def test_advance_pauses_again_and_equals_uninterrupted(tiny_model_dir, prompts, growing):
    """Launch to 6, advance to 11 and 17 (packed launches, prompts renumbered), resume: every kept
    path is token-identical to uninterrupted generation, and each pause holds exactly L tokens."""
    small = HFEngine(tiny_model_dir, batch_size=8, growing_cache=growing)
    full = small.generate(prompts, 6, SAMPLED)
    launches = [small.launch([prompt], 6, 6, SAMPLED) for prompt in prompts]  # one width each
    keeps = [[[0, 1, 3, 5]], [[0, 2, 4, 5]], [[1, 2, 3]]]
    merged = []
    original = HFEngine._merge
    small._merge = lambda chunks, max_new: (merged.append(len(chunks)), original(small, chunks, max_new))[1]
    second = small.advance_many(launches, keeps, 11)
    assert max(merged) >= 2  # rows of different launches decoded in one batch
    assert all(launch.state is None for launch in launches) and second.prefix_len == 11
    assert [[path.sample_index for path in group] for group in second.paths] == [k[0] for k in keeps]
    for q, group in enumerate(second.paths):
        for path in group:
            assert path.prompt_index == q and path.prefix_tokens == min(6, full[q][path.sample_index].generated_tokens)
            assert path.generated_tokens == 11 or path.finished
            assert path.token_ids == full[q][path.sample_index].token_ids[:11]
    for paths, cache, mask in small.prefix_states(second):  # the grown cache covers prompt + 11 tokens
        assert cache.get_seq_length() == mask.shape[1] and all(int(mask[r].sum()) == len(p.prompt_ids) + 11
                                                               for r, p in enumerate(paths) if not p.finished)
    third = small.advance(second, [[5, 1], [4, 0], [2, 3]], 17)
    resumed = small.resume(third, [[1], [4, 0], [3]])
    for q, group in enumerate(resumed):
        for path in group:
            reference = full[q][path.sample_index]
            assert path.token_ids == reference.token_ids and path.finish_reason == reference.finish_reason
            np.testing.assert_allclose(path.logprobs, reference.logprobs, atol=1e-5)
    with pytest.raises(ValueError, match="must exceed"):
        small.advance(small.launch(prompts, 2, 8, SAMPLED), [[0], [], []], 8)
    with pytest.raises(ValueError, match="already resumed"):
        small.advance(third, [[], [], []], 30)
