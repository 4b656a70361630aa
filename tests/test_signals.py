"""Pruning signals of Types I-III on hand-built prefixes and on paths sampled from a tiny Llama."""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch

from stoplib.engines.base import ReasoningPath, SamplingParams
from stoplib.engines.hf import HFEngine, load_model_and_tokenizer
from stoplib.problems import Problem
from stoplib.signals import REGISTRY, make_signal, top_k
from stoplib.signals import type1, type2, type3  # noqa: F401  (registers them until __init__ does)
from stoplib.signals.type1 import jaccard_matrix, slimsc_elimination_order, split_steps, unit_set
from stoplib.signals.type2 import (PRMSignal, TextVerifier, VerifierConfig, VerifierSignal, aggregate_rewards,
                                   load_prm, prm_conversation, prm_steps, step_rewards)
from stoplib.signals.type3 import (bottom_fraction_mean, chosen_in_top_k, deepconf_token_confidence, group_confidences,
                                   resolve_window, self_certainty_tokens, tail_mean, token_confidence)
from stoplib.train import LabelRecord, TrainConfig, evaluate, train_verifier

from .conftest import build_char_tokenizer

PARAMS = SamplingParams(temperature=1.0, max_new_tokens=24, seed=3, logprobs=5)
PREFIX = 10

EXPECTED = {  # name: (type, source, learnable)
    "slimsc_jaccard": ("I", "external", False),
    "step_consensus": ("I", "external", False),
    "prm": ("II", "external", True),
    "verifier": ("II", "external", True),
    "mean_logprob": ("III", "internal", False),
    "min_logprob": ("III", "internal", False),
    "deepconf_mean": ("III", "internal", False),
    "deepconf_lowest_group": ("III", "internal", False),
    "deepconf_bottom10": ("III", "internal", False),
    "deepconf_tail": ("III", "internal", False),
    "mean_entropy": ("III", "internal", False),
    "perplexity": ("III", "internal", False),
    "self_certainty": ("III", "internal", False),
}


def path_of(ids, sample_index=0, finished=False, **stats) -> ReasoningPath:
    return ReasoningPath(prompt_index=0, sample_index=sample_index, prompt_ids=[1], token_ids=list(ids),
                finish_reason="stop" if finished else None, **stats)


# ------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run far faster on one thread on this shared 2-core machine; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sampled(tiny_model_dir):
    """Prefixes (L = 10) of paths sampled from the tiny Llama, two problems x 6 paths."""
    model, tok = load_model_and_tokenizer(tiny_model_dir)
    engine = HFEngine(model, tok, batch_size=16)
    problems = [Problem(id=f"p{i}", prompt=q, answer="1", kind="toy", source="test") for i, q in enumerate(["12+3", "ab"])]
    groups = engine.generate([tok(p.prompt)["input_ids"] for p in problems], 6, PARAMS)
    return tok, problems, [[p.prefix(PREFIX) for p in g] for g in groups]


@pytest.fixture(scope="module")
def prm_dir(tmp_path_factory):
    """A tiny Qwen2 token-classification PRM (2 labels) whose tokenizer has the <extra_0> token."""
    from transformers import Qwen2Config, Qwen2ForTokenClassification

    path = tmp_path_factory.mktemp("tiny_prm")
    tok = build_char_tokenizer()
    tok.add_tokens(["<extra_0>"], special_tokens=True)
    torch.manual_seed(1)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, num_labels=2,
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    Qwen2ForTokenClassification(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def build_signals(tok, prm_dir, tiny_model_dir):
    verifier = TextVerifier.from_base(tiny_model_dir, VerifierConfig(mode="head"))
    return {
        "slimsc_jaccard": make_signal("slimsc_jaccard", tokenizer=tok),
        "step_consensus": make_signal("step_consensus", tokenizer=tok),
        "prm": make_signal("prm", prm=prm_dir, tokenizer=tok, step_sep="\n"),
        "verifier": make_signal("verifier", verifier=verifier, tokenizer=tok),
        "self_certainty": make_signal("self_certainty", vocab_size=len(tok)),
        **{name: make_signal(name) for name in EXPECTED if REGISTRY[name][0].type == "III" and name != "self_certainty"},
    }


# ------------------------------------------------------------------------------------ registry


def test_registry_places_every_signal_in_the_taxonomy():
    for name, (typ, source, learnable) in EXPECTED.items():
        info = REGISTRY[name][0]
        assert (info.type, info.source, info.learnable) == (typ, source, learnable), name
        assert info.description


def test_every_signal_gives_finite_deterministic_scores_on_model_paths(sampled, prm_dir, tiny_model_dir):
    tok, problems, groups = sampled
    signals = build_signals(tok, prm_dir, tiny_model_dir)
    assert set(signals) == set(EXPECTED)
    for name, signal in signals.items():
        for problem, prefixes in zip(problems, groups):
            first = signal.score(prefixes, problem)
            assert first.shape == (len(prefixes),), name
            assert np.isfinite(first).all(), (name, first)
            np.testing.assert_array_equal(first, signal.score(prefixes, problem), err_msg=name)
    # the prefixes differ, so the informative signals do not give one constant score
    for name in ("mean_logprob", "deepconf_mean", "mean_entropy", "self_certainty", "slimsc_jaccard", "verifier"):
        assert np.ptp(signals[name].score(groups[0], problems[0])) > 0, name


def test_text_signals_need_a_decoder(sampled):
    _, problems, groups = sampled
    with pytest.raises(ValueError, match="tokenizer= or decode="):
        make_signal("slimsc_jaccard").score(groups[0], problems[0])
    # token-id units need no decoding
    scores = make_signal("slimsc_jaccard", unit="tokens", ngram=2).score(groups[0], problems[0])
    assert sorted(scores) == list(range(len(groups[0])))


# ------------------------------------------------------------------------------------ Type I


WORDS = ["a", "b", "c", "d", "e", "f", "x", "y"]
HAND = ["a b c", "c b a", "a b d f", "x y", "a e"]  # prefixes A..E (sample indices 0..4)


def word_paths(texts):
    return [path_of([WORDS.index(w) for w in t.split()], i) for i, t in enumerate(texts)]


def decode_words(ids):
    return " ".join(WORDS[i] for i in ids)


def test_slimsc_hand_example_follows_the_documented_greedy_rule():
    # J(A,B)=1, J(A,C)=2/5, J(A,E)=1/4, J(C,E)=1/5, every pair with D is 0.
    # pass 0: max pair (A,B); means A=B=(1+.4+0+.25)/4 -> tie -> higher index: drop B
    # pass 1: R={A,C,D,E}, max pair (A,C); mean A=.65/3 > mean C=.6/3: drop A
    # pass 2: R={C,D,E}, max pair (C,E); means .1 = .1: drop E;  pass 3: (C,D) at 0, tie: drop D
    signal = make_signal("slimsc_jaccard", decode=decode_words)
    scores = signal.score(word_paths(HAND))
    np.testing.assert_array_equal(scores, [1, 0, 4, 3, 2])
    assert top_k(scores, range(5), 1) == [2]
    assert sorted(top_k(scores, range(5), 3)) == [2, 3, 4]


def greedy_keep(sets, indices, k):
    """Independent reference: the documented rule with exact fractions, stopped when k remain."""
    def jac(a, b):
        union = len(a | b)
        return Fraction(len(a & b), union) if union else Fraction(1)

    alive = list(range(len(sets)))
    while len(alive) > k:
        pairs = [(jac(sets[i], sets[j]), i, j) for i, j in itertools.combinations(alive, 2)]
        best = max(p[0] for p in pairs)
        cands = {x for s, i, j in pairs if s == best for x in (i, j)}
        mean = {i: sum(jac(sets[i], sets[j]) for j in alive if j != i) / (len(alive) - 1) for i in cands}
        alive.remove(max(cands, key=lambda i: (mean[i], indices[i])))
    return sorted(indices[i] for i in alive)


def test_slimsc_scores_reproduce_the_greedy_selection_for_every_k():
    rng = random.Random(0)
    signal = make_signal("slimsc_jaccard", decode=decode_words)
    for trial in range(30):
        n = rng.randrange(2, 9)
        texts = [" ".join(rng.sample(WORDS, rng.randrange(0, 4))) for _ in range(n)]
        paths = word_paths(texts)
        indices = [p.sample_index for p in paths]
        scores = signal.score(paths)
        sets = [set(t.split()) for t in texts]
        for k in range(1, n + 1):
            assert sorted(top_k(scores, indices, k)) == greedy_keep(sets, indices, k), (trial, texts, k)


def test_units_and_jaccard():
    assert unit_set("b:8*7+3=9\nc:9*7+3=6", [], "words") == {"b:8*7+3=9", "c:9*7+3=6"}
    assert unit_set("a b c", [], "words", ngram=2) == {("a", "b"), ("b", "c")}
    assert unit_set("ab", [], "chars", ngram=3) == {("a", "b")}
    assert unit_set(None, [5, 6, 5], "tokens") == {5, 6}
    sim = jaccard_matrix([frozenset("ab"), frozenset("bc"), frozenset()])
    np.testing.assert_allclose(sim, [[1, 1 / 3, 0], [1 / 3, 1, 0], [0, 0, 1]])
    assert slimsc_elimination_order(np.eye(3), [7, 8, 9]) == [2, 1, 0]  # all pairs at 0: drop high indices first


def test_step_consensus_hand_example():
    tok = build_char_tokenizer()
    texts = ["b:1\nc:2\nd:3", "b:1\nc:5\nd:", "b:1\nc:2\n"]
    paths = [path_of(tok.encode(t, add_special_tokens=False), i) for i, t in enumerate(texts)]
    # completed steps: {b:1, c:2}, {b:1, c:5}, {b:1, c:2} (the cut last step is dropped)
    scores = make_signal("step_consensus", tokenizer=tok).score(paths)
    np.testing.assert_allclose(scores, [0.75, 0.5, 0.75])
    assert split_steps("x\n\ny\nz", "\n", drop_partial=True) == ["x", "y"]
    # a finished prefix keeps its last step
    paths[0] = path_of(paths[0].token_ids, 0, finished=True)
    np.testing.assert_allclose(make_signal("step_consensus", tokenizer=tok).score(paths), [0.5, 0.5, 0.75])


# ------------------------------------------------------------------------------------ Type III


TOP = np.log(np.array([[0.5, 0.25], [0.9, 0.05], [0.4, 0.4], [0.8, 0.1], [0.6, 0.2]]))


def test_deepconf_formulas_on_hand_computed_logprobs():
    conf = token_confidence(TOP)  # C_i = -(1/k) sum_j log P_i(j)
    expected = [-(math.log(0.5) + math.log(0.25)) / 2, -(math.log(0.9) + math.log(0.05)) / 2,
                -math.log(0.4), -(math.log(0.8) + math.log(0.1)) / 2, -(math.log(0.6) + math.log(0.2)) / 2]
    np.testing.assert_allclose(conf, expected)
    np.testing.assert_allclose(token_confidence(TOP, k=1), -TOP[:, 0])
    groups = group_confidences(conf, 2)  # windows [0,2) [1,3) [2,4) [3,5)
    np.testing.assert_allclose(groups, [(conf[i] + conf[i + 1]) / 2 for i in range(4)])
    np.testing.assert_allclose(group_confidences(conf, 9), [conf.mean()])  # shorter than the window
    assert bottom_fraction_mean(groups) == groups.min()  # int(0.1 * 4) = 0 -> at least 1 group
    many = np.arange(25.0)
    assert bottom_fraction_mean(many) == 0.5  # int(0.1 * 25) = 2 lowest: (0 + 1) / 2
    assert tail_mean(conf, 2) == pytest.approx(conf[-2:].mean())

    path = path_of(range(5), top_logprobs=TOP.astype(np.float32), logprobs=TOP[:, 0].astype(np.float32),
                   entropies=np.ones(5, np.float32))
    get = lambda name, **kw: float(make_signal(name, **kw).score([path])[0])  # noqa: E731
    topk = {"token_confidence": "topk"}
    assert get("deepconf_mean", **topk) == pytest.approx(conf.mean(), rel=1e-6)
    assert get("deepconf_lowest_group", window=2, **topk) == pytest.approx(groups.min(), rel=1e-6)
    assert get("deepconf_bottom10", window=2, **topk) == pytest.approx(groups.min(), rel=1e-6)
    assert get("deepconf_tail", window=2, **topk) == pytest.approx(conf[-2:].mean(), rel=1e-6)
    # default window: ceil(0.25 * longest prefix) = ceil(1.25) = 2
    assert resolve_window([5, 3], None, 0.25) == 2 and resolve_window([2048], None, 0.25) == 512
    assert get("deepconf_lowest_group", **topk) == pytest.approx(groups.min(), rel=1e-6)
    # every sampled token is the top-1 here, so DeepConf's definition only rounds
    assert get("deepconf_mean") == pytest.approx(np.round(conf, 3).mean(), abs=1e-12)
    assert get("mean_entropy") == pytest.approx(-1.0)
    assert get("perplexity") == pytest.approx(-math.exp(-TOP[:, 0].mean()), rel=1e-6)


# Five positions, top k = 2 stored. The sampled token is the 1st, -, 1st, -, 2nd of the top 2; at
# positions 1 and 3 it is outside them, with probability 0.05 and 0.1.
DC_TOP_P = [[0.5, 0.25], [0.6, 0.3], [0.7, 0.2], [0.4, 0.4], [0.9, 0.05]]
DC_TOP_IDS = np.array([[10, 11], [12, 13], [14, 15], [16, 17], [18, 19]], np.int32)
DC_TOKENS = [10, 99, 14, 98, 19]
DC_CHOSEN_P = [0.5, 0.05, 0.7, 0.1, 0.05]
# DeepConf (compute_confidence): round(-mean(top 2 [+ sampled if outside]), 3), by hand:
#   0: (ln 2 + ln 4) / 2 = 1.03972 -> 1.040      1: (-ln .6 - ln .3 - ln .05) / 3 = 1.57018 -> 1.570
#   2: (-ln .7 - ln .2) / 2 = 0.98306 -> 0.983    3: (-2 ln .4 - ln .1) / 3 = 1.37839 -> 1.378
#   4: (-ln .9 - ln .05) / 2 = 1.55055 -> 1.551
DC_CONF = [1.040, 1.570, 0.983, 1.378, 1.551]
# top-k only, unrounded: positions 1 and 3 become (-ln .6 - ln .3) / 2 and -ln .4
TOPK_CONF = [1.0397207708, 0.8573992140, 0.9830564282, 0.9162907319, 1.5505463946]


def dc_path(with_ids: bool = True) -> ReasoningPath:
    top = np.log(np.array(DC_TOP_P)).astype(np.float32)
    stats = {"top_ids": DC_TOP_IDS} if with_ids else {}
    return path_of(DC_TOKENS, top_logprobs=top, logprobs=np.log(DC_CHOSEN_P).astype(np.float32),
                   entropies=np.ones(5, np.float32), **stats)


def test_deepconf_reference_definition_by_hand():
    path = dc_path()
    inside = chosen_in_top_k(path.token_ids, path.logprobs, path.top_ids, path.top_logprobs)
    np.testing.assert_array_equal(inside, [True, False, True, False, True])
    # without top_ids, membership from the values (position 4 ties the 2nd exactly: inside)
    np.testing.assert_array_equal(chosen_in_top_k(path.token_ids, path.logprobs, np.zeros((0, 0)), path.top_logprobs),
                                  [True, False, True, False, True])
    np.testing.assert_allclose(deepconf_token_confidence(path.top_logprobs, path.logprobs, inside), DC_CONF, atol=1e-12)
    np.testing.assert_allclose(deepconf_token_confidence(path.top_logprobs, path.logprobs, inside, decimals=None),
                               [1.0397207708, 1.5701769005, 0.9830564282, 1.3783888522, 1.5505463946], rtol=1e-6)
    np.testing.assert_allclose(token_confidence(path.top_logprobs), TOPK_CONF, rtol=1e-6)
    # k = 1 of the stored 2: position 4's sampled token (2nd) is then outside: (-ln .9 - ln .05) / 2
    inside1 = chosen_in_top_k(path.token_ids, path.logprobs, path.top_ids, path.top_logprobs, k=1)
    np.testing.assert_array_equal(inside1, [True, False, True, False, False])
    assert deepconf_token_confidence(path.top_logprobs, path.logprobs, inside1, k=1)[4] == pytest.approx(1.551)

    def get(name: str, p: ReasoningPath = path, **kw) -> float:
        return float(make_signal(name, window=2, **kw).score([p])[0])

    # window 2 over DC_CONF: groups 1.305, 1.2765, 1.1805, 1.4645 (means of rounded values, not rounded)
    expected = {"deepconf_mean": 6.522 / 5, "deepconf_lowest_group": 1.1805, "deepconf_bottom10": 1.1805,
                "deepconf_tail": 1.4645}  # bottom 10% of 4 groups: max(1, int(0.4)) = 1, the lowest
    for name, value in expected.items():
        assert get(name) == pytest.approx(value, abs=1e-9), name
        assert get(name, dc_path(with_ids=False)) == pytest.approx(value, abs=1e-9), name
    assert get("deepconf_bottom10", fraction=0.5) == pytest.approx((1.1805 + 1.2765) / 2, abs=1e-9)
    assert get("deepconf_tail", tail=3) == pytest.approx((0.983 + 1.378 + 1.551) / 3, abs=1e-9)
    # the top-k definition: groups 0.94856, 0.92023, 0.94967, 1.23342 -- another window is the lowest
    topk = {"deepconf_mean": 1.0694027079, "deepconf_lowest_group": 0.9202278211,
            "deepconf_bottom10": 0.9202278211, "deepconf_tail": 1.2334185632}
    for name, value in topk.items():
        assert get(name, token_confidence="topk") == pytest.approx(value, rel=1e-6), name
    with pytest.raises(ValueError, match="token_confidence"):
        make_signal("deepconf_mean", token_confidence="top20")


def test_deepconf_membership_from_ids_matches_values_on_model_paths(sampled):
    _, _, groups = sampled
    outside = 0
    for p in (p for g in groups for p in g):
        by_ids = chosen_in_top_k(p.token_ids, p.logprobs, p.top_ids, p.top_logprobs)
        by_values = chosen_in_top_k(p.token_ids, p.logprobs, np.zeros((0, 0)), p.top_logprobs)
        np.testing.assert_array_equal(by_ids, by_values)
        outside += int((~by_ids).sum())
    assert outside > 0  # sampling at T = 1 from the tiny model often leaves the stored top 5


def test_deepconf_needs_top_logprobs():
    with pytest.raises(ValueError, match="logprobs=20"):
        make_signal("deepconf_mean").score([path_of([1, 2], top_logprobs=np.zeros((2, 0), np.float32))])


def test_self_certainty_exact_with_full_distribution_and_a_lower_bound_otherwise():
    rng = np.random.default_rng(0)
    v = 50
    probs = rng.dirichlet(np.full(v, 0.3), size=4)
    logp = np.log(probs)
    exact = -math.log(v) - logp.mean(axis=1)  # KL(U || P) per token
    full = -np.sort(-logp, axis=1)
    np.testing.assert_allclose(self_certainty_tokens(full, v), exact, rtol=1e-9)
    approx = self_certainty_tokens(full[:, :20], v)
    assert (approx <= exact + 1e-9).all()
    # a uniform tail makes the approximation exact
    top = np.array([0.5, 0.2, 0.1])
    dist = np.concatenate([top, np.full(v - 3, 0.2 / (v - 3))])
    exact_u = -math.log(v) - np.log(dist).mean()
    assert self_certainty_tokens(np.log(top)[None, :], v)[0] == pytest.approx(exact_u)
    # top-k variant: KL(U_k || renormalised top-k) = C_i - log k + log(top mass)
    c = token_confidence(np.log(top)[None, :])[0]
    assert self_certainty_tokens(np.log(top)[None, :], None, "topk")[0] == pytest.approx(c - math.log(3) + math.log(0.8))
    with pytest.raises(ValueError, match="vocab_size"):
        make_signal("self_certainty")


# ------------------------------------------------------------------------------------ Type II: PRM


def test_prm_step_splitting_and_aggregation():
    assert prm_steps("b:1\n\nc:2\n\n d") == ["b:1", "c:2", "d"]
    assert prm_steps("b:1\n\nc:2\n\n d", partial_last="drop") == ["b:1", "c:2"]
    assert prm_steps("b:1\n\nc:2\n\n", partial_last="drop") == ["b:1", "c:2"]
    assert prm_steps("b:1\nc:2\nd", "\n") == ["b:1", "c:2", "d"]
    assert prm_steps("only", partial_last="drop") == ["only"]
    logits = torch.tensor([[0.0, 0.0], [5.0, 1.0], [0.0, math.log(3)], [2.0, 2.0], [0.0, -math.log(3)]])
    rewards = step_rewards(logits, torch.tensor([False, False, True, False, True]))
    np.testing.assert_allclose(rewards, [0.75, 0.25], rtol=1e-6)  # softmax(.)[1] at the separators only
    rewards = np.array([0.75, 0.25])
    assert aggregate_rewards(rewards, "min") == 0.25 and aggregate_rewards(rewards, "last") == 0.25
    assert aggregate_rewards([0.25, 0.75], "last") == 0.75 and aggregate_rewards(rewards, "mean") == 0.5
    assert aggregate_rewards(rewards, "product") == pytest.approx(math.log(0.75 * 0.25))


def test_prm_separator_positions_and_known_rewards(prm_dir):
    gen_tok = build_char_tokenizer()
    signal = PRMSignal(prm_dir, tokenizer=gen_tok, step_sep="\n", aggregate="product", partial_last="drop")
    prm_tok = signal.prm_tokenizer
    text = prm_conversation(prm_tok, "12+3", ["b:1", "c:2"])
    ids = prm_tok.encode(text, add_special_tokens=False)
    sep = [i for i, t in enumerate(ids) if t == signal.step_token_id]
    assert len(sep) == 2
    assert prm_tok.decode(ids[sep[0] - 3:sep[0]]) == "b:1" and prm_tok.decode(ids[sep[1] - 3:sep[1]]) == "c:2"
    # a head that ignores the hidden state: every step reward is sigmoid(b)
    with torch.no_grad():
        signal.model.score.weight.zero_()
        signal.model.score.bias.copy_(torch.tensor([0.0, 0.7]))
    r = 1 / (1 + math.exp(-0.7))
    problem = Problem(id="p", prompt="12+3", answer="1", kind="toy", source="test")
    paths = [path_of(gen_tok.encode(t, add_special_tokens=False), i)
             for i, t in enumerate(["b:1\nc:2\nd:3", "b:1\nc", "b:1\nc:2\nd:3\ne:4\n", "x"])]
    # completed steps: 2, 1, 4, and the single partial step kept when it is the only one
    np.testing.assert_allclose(signal.score(paths, problem), [2 * math.log(r), math.log(r), 4 * math.log(r), math.log(r)],
                               rtol=1e-5)


def test_prm_batching_matches_the_model_card_recipe_one_at_a_time(prm_dir):
    gen_tok = build_char_tokenizer()
    signal = PRMSignal(prm_dir, tokenizer=gen_tok, step_sep="\n", batch_size=4)
    problem = Problem(id="p", prompt="ab", answer="1", kind="toy", source="test")
    texts = ["b:1\nc:2\nd", "b:9\n", "q\nr\ns\nt\nu", ""]
    paths = [path_of(gen_tok.encode(t, add_special_tokens=False), i) for i, t in enumerate(texts)]
    batched = signal.rewards(paths, problem)
    model, tok = signal.model, signal.prm_tokenizer
    for text, got in zip(texts, batched):
        steps = prm_steps(text, "\n")
        if not steps:
            assert got.size == 0
            continue
        conv = tok.apply_chat_template([{"role": "system", "content": type2.PRM_SYSTEM}, {"role": "user", "content": "ab"},
                                        {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}],
                                       tokenize=False, add_generation_prompt=False)
        ids = torch.tensor([tok.encode(conv, add_special_tokens=False)])
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=ids)[0], dim=-1)[0]
        expected = probs[ids[0] == tok.convert_tokens_to_ids("<extra_0>")][:, 1].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert signal.score(paths, problem)[3] == 0.5  # no step: the uninformative score


def test_prm_loader_refuses_custom_code_unless_asked(prm_dir, tmp_path):
    custom = tmp_path / "custom"
    shutil.copytree(prm_dir, custom)
    config = json.loads((custom / "config.json").read_text())
    config["architectures"] = ["Qwen2ForProcessRewardModel"]
    config["auto_map"] = {"AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}
    (custom / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        load_prm(custom)
    model, _ = load_prm(prm_dir)
    assert model.config.num_labels == 2


# ------------------------------------------------------------------------------------ Type II: verifier


def digit_records(n: int, seed: int, tok) -> list[LabelRecord]:
    """Generator-token records whose label says whether the text ends with a digit."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = "".join(rng.choice("abcdefgh+-") for _ in range(rng.randrange(2, 6)))
        good = rng.random() < 0.5
        text = "q:" + body + (rng.choice("0123456789") if good else rng.choice("xyz"))
        ids = [tok.bos_token_id] + tok.encode(text, add_special_tokens=False)
        out.append(LabelRecord(tuple(ids), 0.9 if good else 0.1, int(good), problem_id=str(i % 8)))
    return out


def test_verifier_trains_on_text_and_scores_paths(tiny_model_dir, tmp_path, sampled):
    gen_tok = build_char_tokenizer()
    train, val = digit_records(128, 0, gen_tok), digit_records(48, 1, gen_tok)
    torch.manual_seed(0)
    verifier = TextVerifier.from_base(tiny_model_dir, VerifierConfig(mode="lora", lora_r=4, lora_alpha=8))
    assert verifier.config.base_model == str(tiny_model_dir)
    decode = lambda ids: gen_tok.decode(list(ids), skip_special_tokens=True)  # noqa: E731
    before = evaluate(verifier, type2.retokenize_records(val, decode, verifier))["mse"]
    config = TrainConfig(lr=2e-2, epochs=3, batch_size=32, warmup_steps=2, seed=0)
    result = train_verifier(verifier, train, val, config, tmp_path / "run", decode=decode, progress=False)
    best = min(h["val_mse"] for h in result.history)
    assert best < 0.6 * before, (before, result.history)
    # the best checkpoint reloads on a fresh copy of the base model and scores alike
    reloaded = TextVerifier.from_pretrained(result.best_dir)
    assert reloaded.model is not verifier.model
    assert evaluate(reloaded, type2.retokenize_records(val, decode, reloaded))["mse"] == pytest.approx(best, abs=1e-6)
    # scoring from ReasoningPath prefixes: decoded prompt + prefix text, re-encoded by the verifier
    tok, problems, groups = sampled
    signal = VerifierSignal(checkpoint=result.best_dir, tokenizer=tok)
    scores = signal.score(groups[0], problems[0])
    assert scores.shape == (6,) and ((scores > 0) & (scores < 1)).all()
    text = tok.decode(groups[0][0].prompt_ids + groups[0][0].token_ids, skip_special_tokens=True)
    assert scores[0] == pytest.approx(float(signal.verifier.score_texts([text])[0]))


def test_full_finetune_verifier_round_trip(tiny_model_dir, tmp_path):
    verifier = TextVerifier.from_base(tiny_model_dir, VerifierConfig(mode="full"))
    assert len(verifier.trainable_parameters()) > 2
    with torch.no_grad():
        for p in verifier.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        verifier.head.weight.normal_()
    probe = [verifier.encode_text(t) for t in ["q:ab1", "q:x", "q:12+3=4\nb"]]
    verifier.save_pretrained(tmp_path / "v")
    reloaded = TextVerifier.from_pretrained(tmp_path / "v")
    torch.testing.assert_close(reloaded.score(probe), verifier.score(probe))


def test_verifier_encodes_a_shared_beginning_once_with_the_same_gradients(tiny_model_dir):
    from stoplib.signals.type2 import TextVerifier, VerifierConfig
    from stoplib.stop import left_pad

    torch.manual_seed(0)
    verifier = TextVerifier.from_base(tiny_model_dir, VerifierConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0))
    with torch.no_grad():
        for p in verifier.trainable_parameters():
            p.add_(0.05 * torch.randn_like(p))
    seqs = [[1] + list(range(10, 22)) + [30 + i] * (1 + i % 3) for i in range(5)]  # 13 shared tokens
    verifier.train()

    def grads(logits):
        verifier.zero_grad()
        logits.sum().backward()
        return [p.grad.clone() for p in verifier.trainable_parameters()]

    shared = verifier.logits(seqs)
    g_shared = grads(shared)
    whole = verifier(*left_pad(seqs, verifier.pad_id))
    g_whole = grads(whole)
    assert torch.allclose(shared, whole, atol=1e-5)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(g_shared, g_whole))
