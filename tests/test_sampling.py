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
