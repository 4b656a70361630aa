"""HF engine speed, as ratios measured within one run (this machine is shared and noisy).

1. Batched sampling throughput (generated tokens/s) at batch 16, 64 and 256.
2. Resume from the KV cache vs re-encoding prompt+prefix and then continuing, at several
   prefix lengths. Both continue greedily from the same context, so they generate exactly
   the same tokens and only the way the prefix is obtained differs.

    python bench/engine.py [--model toy] [--repeats 3]

The last line prints the ratios.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from stoplib.config import model_defaults  # noqa: E402
from stoplib.engines.base import SamplingParams  # noqa: E402
from stoplib.engines.hf import HFEngine  # noqa: E402


def bench_prompts(model: str, engine: HFEngine, count: int) -> list[list[int]]:
    """Prompts for the benchmark: held-out organism problems, or short generic questions."""
    from stoplib.prompts import build_prompt_ids

    if model == "toy":
        from stoplib.toy.task import make_problems

        problems = make_problems(count, seed=123, split="eval")
    else:
        from stoplib.problems import Problem

        problems = [Problem(id=str(i), prompt=f"What is {i} + {i + 1}?", answer=str(2 * i + 1), kind="math",
                            source="bench") for i in range(count)]
    return [build_prompt_ids(p, engine.tokenizer) for p in problems]


def throughput(engine: HFEngine, prompts: list[list[int]], batch: int, max_new: int) -> float:
    engine.batch_size = batch
    params = SamplingParams(max_new_tokens=max_new, seed=1, logprobs=20)
    n = max(1, batch // len(prompts))
    start = time.perf_counter()
    paths = engine.generate(prompts, n, params)
    elapsed = time.perf_counter() - start
    return sum(p.generated_tokens for g in paths for p in g) / elapsed


def resume_vs_reencode(engine: HFEngine, prompts: list[list[int]], prefix_len: int, extra: int, n: int) -> float:
    """Time(resume from cache) / time(re-encode prompt+prefix, then continue)."""
    sampled = SamplingParams(max_new_tokens=prefix_len + extra, seed=1, logprobs=20)
    launch = engine.launch(prompts, n, prefix_len, sampled)
    launch.params = sampled.with_(temperature=0.0)  # continue greedily, so both ways agree token for token
    open_paths = [p for p in launch.flat() if not p.finished]
    contexts = [p.prompt_ids + p.token_ids for p in open_paths]
    keep = [[p.sample_index for p in group if not p.finished] for group in launch.paths]
    start = time.perf_counter()
    resumed = [p for group in engine.resume(launch, keep) for p in group]
    t_resume = time.perf_counter() - start
    start = time.perf_counter()
    redone = [g[0] for g in engine.generate(contexts, 1, launch.params.with_(max_new_tokens=extra))]
    t_reencode = time.perf_counter() - start
    same = sum(a.token_ids[a.prefix_tokens:] == b.token_ids for a, b in zip(resumed, redone))
    if same < 0.9 * len(redone):
        raise RuntimeError(f"resume and re-encode disagree on {len(redone) - same} of {len(redone)} paths")
    return t_resume / t_reencode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy", help='"toy" or a local path / hub id')
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 for the organism)")
    args = parser.parse_args()
    toy = args.model == "toy"
    torch.set_num_threads(args.threads or (1 if toy else max(1, os.cpu_count() or 1)))
    defaults = model_defaults(args.model, "small")
    engine = HFEngine(defaults.path, attn_implementation="eager" if toy else None)
    max_new = args.max_new or defaults.max_new_tokens
    prompts = bench_prompts(args.model, engine, 16)
    throughput(engine, prompts[:2], 16, 16)  # warm-up

    rates = {}
    for batch in (16, 64, 256):
        runs = [throughput(engine, prompts, batch, max_new) for _ in range(args.repeats)]
        rates[batch] = sorted(runs)[len(runs) // 2]
        print(f"batch {batch:4d}: {rates[batch]:8.0f} generated tokens/s (median of {args.repeats})", flush=True)

    engine.batch_size = 64
    ratios = {}
    typical = 118 if toy else max_new  # organism paths are ~118 tokens: resume must have something to do
    lengths = [L for L in (16, 32, 64, 96, 128, 256) if L + 16 < min(max_new, typical)]
    for L in lengths:
        runs = [resume_vs_reencode(engine, prompts[:8], L, 32, 8) for _ in range(args.repeats)]
        ratios[L] = sorted(runs)[len(runs) // 2]
        print(f"prefix {L:4d}: resume / (re-encode + continue) time = {ratios[L]:.2f}", flush=True)

    speedup = " ".join(f"b{b}/b16={rates[b] / rates[16]:.2f}" for b in (64, 256))
    resume = " ".join(f"L{L}={r:.2f}" for L, r in ratios.items())
    print(f"RATIOS throughput {speedup} | resume/reencode {resume}")


if __name__ == "__main__":
    main()
