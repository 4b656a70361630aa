"""[STOP] attention extraction on a tiny Llama."""

from __future__ import annotations

import numpy as np
import torch

from stoplib.attention import aggregate, categorize_steps, category_mass, span_enrichment, stop_attention
from stoplib.engines.hf import load_model_and_tokenizer
from stoplib.stop import StopConfig, StopScorer


def test_attention_rows_are_distributions_over_allowed_positions(tiny_model_dir):
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    scorer = StopScorer(model, tok, StopConfig(num_tokens=3, lora_r=4))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in scorer._lora_params:
            p.normal_(0, 0.3)
    seq = [1, 5, 6, 7, 8, 9]
    before = model.config._attn_implementation
    att, score = stop_attention(scorer, seq)
    assert model.config._attn_implementation == before  # eager only during the call
    layers, heads, m, keys = att.shape
    assert (layers, heads, m, keys) == (2, 4, 3, len(seq) + 3)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    for j in range(m):  # a [STOP] token sees the prefix and the [STOP]s up to itself, never later ones
        assert np.all(att[:, :, j, len(seq) + j + 1:] == 0)
    assert abs(score - float(scorer.score([seq])[0])) < 1e-5  # eager attention gives the same score
    vec = aggregate(att, query="all", layers=1)
    assert vec.shape == (keys,) and abs(vec.sum() - 1) < 1e-6


def test_categories_and_enrichment():
    tokens = list("Q:a3\nA:") + list("b:3*7+1=2\n\\boxed{2}")
    labels = categorize_steps(tokens, prompt_len=7)
    assert labels[:7] == ["prompt"] * 7
    assert labels[7 + 2] == "digit" and labels[7 + 3] == "operator" and labels[-1] == "answer"
    mass = category_mass(np.full(len(tokens), 1 / len(tokens)), labels)
    assert abs(sum(mass.values()) - 1) < 1e-9
    w = np.zeros(10)
    w[2:4] = 0.5
    assert span_enrichment(w, (2, 4), (0, 10)) == 5.0
