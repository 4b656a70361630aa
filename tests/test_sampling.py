"""Counter-based sampling and the top-k/top-p filter."""

from __future__ import annotations

import numpy as np
import torch

from stoplib.engines.sampling import filtered_probs, sample_tokens, stream_key, uniforms


def test_uniforms_are_keyed_and_uniform():
    keys = np.full(20000, stream_key(0, [1, 2, 3], 0), dtype=np.uint64)
    u = uniforms(keys, np.arange(20000))
    assert 0 <= u.min() and u.max() < 1
    hist, _ = np.histogram(u, bins=10, range=(0, 1))
    assert np.all(np.abs(hist - 2000) < 200)
    assert np.array_equal(u[:5], uniforms(keys[:5], np.arange(5)))
    assert stream_key(0, [1, 2, 3], 0) != stream_key(0, [1, 2, 3], 1) != stream_key(1, [1, 2, 3], 0)


def test_filter_matches_transformers_warpers():
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)

    torch.manual_seed(0)
    logits = torch.randn(8, 100) * 3
    ours = filtered_probs(logits, 0.6, 40, 0.95)
    ref = TemperatureLogitsWarper(0.6)(None, logits.clone())
    ref = TopKLogitsWarper(40)(None, ref)
    ref = TopPLogitsWarper(0.95)(None, ref)
    ref = torch.softmax(ref, -1)
    assert torch.equal(ours > 0, ref > 0)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


def test_sampling_frequencies_follow_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(40000, 1)
    keys = np.arange(40000, dtype=np.uint64)
    tokens = sample_tokens(logits, uniforms(keys, np.zeros(40000)), 1.0, 0, 1.0)
    freq = torch.bincount(tokens, minlength=4).float() / 40000
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.01, rtol=0)
    top_p = sample_tokens(logits, uniforms(keys, np.ones(40000)), 1.0, 0, 0.7)  # keeps {0, 1}
    assert set(torch.unique(top_p).tolist()) == {0, 1}
    greedy = sample_tokens(logits[:3], np.zeros(3), 0.0, 0, 1.0)
    assert greedy.tolist() == [0, 0, 0]


# ---------------------------------------------------------------------------- the large-vocabulary fast path


def _reference(logits, u, temperature, top_k, top_p):
    return sample_tokens(logits, u, temperature, top_k, top_p, fast=False)


def test_fast_path_picks_the_reference_tokens_for_the_same_uniforms():
    """Random logits (no ties): the fast path returns the reference's token for every uniform."""
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    for vocab, top_k, top_p, temperature, scale in [(2048, 40, 0.95, 0.6, 3.0), (2048, 40, 1.0, 1.0, 1.0),
                                                      (5000, 7, 0.5, 1.3, 4.0), (1500, 200, 0.9, 0.6, 0.5),
                                                      (1024, 1, 0.95, 0.6, 3.0)]:
        logits = torch.randn(64, vocab, generator=gen) * scale
        for _ in range(8):
            u = rng.random(64)
            fast = sample_tokens(logits, u, temperature, top_k, top_p)  # vocab >= 1024: fast by default
            assert torch.equal(fast, _reference(logits, u, temperature, top_k, top_p)), (vocab, top_k, top_p)


def test_fast_path_distribution_equals_filtered_probs():
    from stoplib.engines.sampling import top_k_candidates

    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(32, 3000, generator=gen) * 2.5
    logits[0, :50] = 7.0  # a tie at the top, wider than k
    logits[1, 100:140] = logits[1].max() + 1  # 40 tied tokens above the rest
    for top_k, top_p, temperature in [(40, 0.95, 0.6), (40, 1.0, 1.0), (3, 0.3, 2.0)]:
        ids, probs = top_k_candidates(logits, temperature, top_k, top_p)
        dense = torch.zeros_like(logits).scatter(-1, ids, probs)
        ref = filtered_probs(logits, temperature, top_k, top_p)
        assert torch.equal(dense > 0, ref > 0)
        torch.testing.assert_close(dense, ref, atol=1e-6, rtol=1e-5)
        assert torch.all(ids[:, 1:] > ids[:, :-1])  # increasing vocabulary order


def test_fast_path_keeps_every_token_tied_with_the_kth():
    """Ties at the k-th logit: the reference keeps all of them, so must the fast path."""
    from stoplib.engines.sampling import top_k_candidates

    vocab = 2000
    logits = torch.full((3, vocab), -5.0)
    logits[0, [10, 500, 1999]] = torch.tensor([4.0, 3.0, 3.0])  # k=2: both 3.0s survive
    logits[1, [7, 8]] = 2.0  # k=2, no tie beyond k
    logits[2, :] = 0.0  # everything tied: the whole vocabulary survives
    ids, probs = top_k_candidates(logits, 1.0, 2, 1.0)
    assert ids.shape[1] == vocab
    assert set(ids[0][probs[0] > 0].tolist()) == {10, 500, 1999}
    assert set(ids[1][probs[1] > 0].tolist()) == {7, 8}
    assert int((probs[2] > 0).sum()) == vocab
    ref = filtered_probs(logits, 1.0, 2, 1.0)
    torch.testing.assert_close(torch.zeros_like(logits).scatter(-1, ids, probs), ref, atol=1e-7, rtol=0)
    keys = np.arange(1000, dtype=np.uint64)
    for row in range(3):
        many = logits[row : row + 1].repeat(1000, 1)
        u = uniforms(keys, np.full(1000, row))
        fast, slow = sample_tokens(many, u, 1.0, 2, 1.0), _reference(many, u, 1.0, 2, 1.0)
        assert torch.equal(fast, slow)
    # logits that differ but tie once divided by the temperature (3.0 and the float just below it, T=0.7):
    # the reference filters the divided logits, so both survive a top-2 filter
    logits = torch.full((1, vocab), -5.0)
    logits[0, 1500] = 4.0
    logits[0, 40] = 3.0
    logits[0, 41] = torch.nextafter(torch.tensor(3.0), torch.tensor(0.0))
    assert logits[0, 41] < logits[0, 40] and logits[0, 41] / 0.7 == logits[0, 40] / 0.7
    ids, probs = top_k_candidates(logits, 0.7, 2, 1.0)
    assert set(ids[0][probs[0] > 0].tolist()) == {40, 41, 1500}
    assert torch.equal(torch.zeros_like(logits).scatter(-1, ids, probs) > 0, filtered_probs(logits, 0.7, 2, 1.0) > 0)
    # a top-p cut inside a tie: the stable order keeps the lower ids, as the reference does
    logits = torch.full((1, vocab), -9.0)
    logits[0, [300, 20, 1000]] = 1.0
    u = uniforms(np.arange(500, dtype=np.uint64), np.zeros(500))
    many = logits.repeat(500, 1)
    fast, slow = sample_tokens(many, u, 1.0, 40, 0.5), _reference(many, u, 1.0, 40, 0.5)
    assert torch.equal(fast, slow) and set(fast.tolist()) == {20, 300}


def test_fast_path_frequencies_and_small_vocab_stays_on_the_reference_path():
    from stoplib.engines import sampling

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = torch.full((10000, 1024), -30.0)
    logits[:, [3, 1000, 7, 1023]] = torch.log(probs)
    u = uniforms(np.arange(10000, dtype=np.uint64), np.zeros(10000))
    tokens = sample_tokens(logits, u, 1.0, 40, 1.0)
    freq = torch.bincount(tokens, minlength=1024)[[3, 1000, 7, 1023]].float() / 10000
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    assert sampling.FAST_PATH_MIN_VOCAB > 100  # the organism (vocab 100) samples on the reference path
    small = torch.randn(50, 100) * 3
    u = np.random.default_rng(3).random(50)
    assert torch.equal(sample_tokens(small, u, 0.6, 40, 0.95), _reference(small, u, 0.6, 40, 0.95))


def test_token_stats_large_vocab_path_matches_the_reference_formula():
    from stoplib.engines.sampling import token_stats

    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(16, 3000, generator=gen) * 4
    logits[3, :2000] = float("-inf")  # masked tokens contribute nothing to the entropy
    chosen = logits.argmax(-1)
    lp, ent, top_ids, top_lp = token_stats(logits, chosen, 5)
    logp = torch.log_softmax(logits.double(), -1)
    p = logp.exp()
    expected = -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)
    np.testing.assert_allclose(ent, expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lp, logp.gather(1, chosen[:, None])[:, 0].numpy(), atol=1e-5)
    assert np.isfinite(ent).all() and top_ids.shape == (16, 5) and top_lp.dtype == np.float32
