"""HF engine speed, as ratios measured within one run (this machine is shared and noisy).

1. Batched sampling throughput (generated tokens/s) at several batch sizes (organism: 16, 64, 256).
2. Before vs after on the same model: the engine as it runs now against its reference path
   (full-vocabulary sort in sampling, no compaction of finished rows, transformers' repeat_kv
   attention for grouped-query models, glibc's 32 MB mmap threshold), interleaved runs, same seeds
   (paths must agree). The KV cache sizing is not switched.
3. Resume from the KV cache vs re-encoding prompt+prefix and then continuing, at several
   prefix lengths. Both continue greedily from the same context, so they generate exactly
   the same tokens and only the way the prefix is obtained differs.

    python bench/hf_engine.py [--model toy] [--repeats 3]
    python bench/hf_engine.py --model smollm2-135m --threads 2 --batches 64 128 --max-new 60 \
        --prompt-len 170 --repeats 1 --no-resume

For a model path (not "toy") the defaults are prompts of 162-178 tokens (left padding, as real
prompts of different lengths need), 60 new tokens and batches 64 and 128. On a shared machine
prefer ``--threads 1``: two threads competing with other jobs for two cores make timings erratic.
The last line prints the ratios.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from stoplib.engines.base import SamplingParams  # noqa: E402
from stoplib.engines.hf import GQA_SDPA, MMAP_THRESHOLD, HFEngine, limit_heap_fragmentation  # noqa: E402


TOY_MAX_NEW_TOKENS = 200  # the organism's max_new_tokens (presets: toy, small)


def bench_prompts(model: str, engine: HFEngine, count: int, prompt_len: int = 170) -> list[list[int]]:
    """Prompts for the benchmark: held-out organism problems, or math word problems of about
    ``prompt_len`` tokens (bench/memory.py's)."""
    from stoplib.prompts import build_prompt_ids

    if model == "toy":
        from stoplib.toy.task import make_problems

        problems = make_problems(count, seed=123, split="eval")
        return [build_prompt_ids(p, engine.tokenizer) for p in problems]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from memory import make_prompts

    return make_prompts(engine.tokenizer, count, prompt_len)[1]


def set_reference(engine: HFEngine, reference: bool, gqa: bool) -> None:
    """Switch the engine between its current code path and the reference one (see the docstring)."""
    engine.fast_sampling = False if reference else None
    engine.compact = not reference
    # glibc's own behaviour raises the mmap threshold up to 32 MB: the reference's many logits-sized
    # temporaries then come from the heap, without page faults (and with its fragmentation)
    limit_heap_fragmentation(32 << 20 if reference else MMAP_THRESHOLD)
    if gqa:
        engine.model.config._attn_implementation = "sdpa" if reference else GQA_SDPA


def throughput(engine: HFEngine, prompts: list[list[int]], batch: int, max_new: int, out: list | None = None) -> float:
    engine.batch_size = batch
    params = SamplingParams(max_new_tokens=max_new, seed=1, logprobs=20)
    n = max(1, batch // len(prompts))
    start = time.perf_counter()
    paths = engine.generate(prompts, n, params)
    elapsed = time.perf_counter() - start
    if out is not None:
        out.append([p.token_ids for g in paths for p in g])
    return sum(p.generated_tokens for g in paths for p in g) / elapsed


def before_after(engine: HFEngine, prompts: list[list[int]], batch: int, max_new: int, repeats: int,
                 gqa: bool) -> tuple[float, float]:
    """Median tokens/s of the reference path and of the current path, runs interleaved."""
    rates: dict[bool, list[float]] = {True: [], False: []}
    tokens: dict[bool, list] = {True: [], False: []}
    for _ in range(repeats):
        for reference in (True, False):
            set_reference(engine, reference, gqa)
            rates[reference].append(throughput(engine, prompts, batch, max_new, tokens[reference]))
    set_reference(engine, False, gqa)
    same = sum(a == b for a, b in zip(tokens[True][0], tokens[False][0]))
    if same < 0.95 * len(tokens[True][0]):  # rounding may flip a rare token; more means a bug
        raise RuntimeError(f"batch {batch}: reference and current paths differ on {len(tokens[True][0]) - same} paths")
    median = {r: sorted(v)[len(v) // 2] for r, v in rates.items()}
    return median[True], median[False]


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
    parser.add_argument("--model", default="toy", metavar="PATH",
                        help='"toy" (the organism), another preset (smollm2-135m) or a model directory')
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new", type=int, default=None, help="default: the organism's, or 60 for a model")
    parser.add_argument("--prompt-len", type=int, default=170, help="prompt tokens for a model (not toy)")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="batch sizes (default: 16 64 256 for toy, 64 128 for a model)")
    parser.add_argument("--prompts", type=int, default=None, help="distinct prompts (default: 16 toy, 4 model)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: 1 for the organism)")
    parser.add_argument("--no-compare", action="store_true", help="skip the before/after comparison")
    parser.add_argument("--no-resume", action="store_true", help="skip resume vs re-encode")
    args = parser.parse_args()
    toy = args.model == "toy"
    torch.set_num_threads(args.threads or (1 if toy else max(1, os.cpu_count() or 1)))
    if toy:
        from stoplib.toy.organism import organism_path

        path = str(organism_path("small"))
    else:
        from stoplib.config import resolve

        path = resolve("tiny", model=args.model).model_path  # a preset -> its local directory
    engine = HFEngine(path, attn_implementation="eager" if toy else None)
    gqa = engine.model.config._attn_implementation == GQA_SDPA
    max_new = args.max_new or (TOY_MAX_NEW_TOKENS if toy else 60)
    batches = args.batches or ([16, 64, 256] if toy else [64, 128])
    prompts = bench_prompts(args.model, engine, args.prompts or (16 if toy else 4), args.prompt_len)
    print(f"model {args.model}: vocab {engine.model.config.vocab_size}, prompts of {min(map(len, prompts))}-"
          f"{max(map(len, prompts))} tokens, max_new {max_new}, {torch.get_num_threads()} threads", flush=True)
    throughput(engine, prompts[:2], 4, 4)  # warm-up

    rates, compare = {}, {}
    for batch in batches:
        if args.no_compare:
            runs = [throughput(engine, prompts, batch, max_new) for _ in range(args.repeats)]
            rates[batch] = sorted(runs)[len(runs) // 2]
            print(f"batch {batch:4d}: {rates[batch]:8.1f} generated tokens/s (median of {args.repeats})", flush=True)
            continue
        before, after = before_after(engine, prompts, batch, max_new, args.repeats, gqa)
        rates[batch], compare[batch] = after, after / before
        print(f"batch {batch:4d}: {after:8.1f} generated tokens/s now, {before:8.1f} on the reference path "
              f"-> x{after / before:.2f} (median of {args.repeats})", flush=True)

    engine.batch_size = 64
    ratios = {}
    typical = 118 if toy else max_new  # organism paths are ~118 tokens: resume must have something to do
    lengths = [] if args.no_resume else [L for L in (16, 32, 64, 96, 128, 256) if L + 16 < min(max_new, typical)]
    for L in lengths:
        runs = [resume_vs_reencode(engine, prompts[:8], L, 32, 8) for _ in range(args.repeats)]
        ratios[L] = sorted(runs)[len(runs) // 2]
        print(f"prefix {L:4d}: resume / (re-encode + continue) time = {ratios[L]:.2f}", flush=True)

    first = batches[0]
    speedup = " ".join(f"b{b}/b{first}={rates[b] / rates[first]:.2f}" for b in batches[1:])
    now_vs_ref = " ".join(f"b{b}={r:.2f}" for b, r in compare.items())
    resume = " ".join(f"L{L}={r:.2f}" for L, r in ratios.items())
    print(f"RATIOS throughput {speedup} | now/reference {now_vs_ref} | resume/reencode {resume}")


if __name__ == "__main__":
    main()
