"""Peak memory (RSS) of the online pipeline against the number of problems, each point measured in a
fresh process (``ru_maxrss`` only ever grows, so one process per measurement).

The pipeline processes problems in groups of ``max_paths_in_flight`` paths (``run_pipeline``); with
groups, peak RSS must stay flat once there are more problems than fit in one group, while launching
every problem at once (``max_paths_in_flight=None``) holds every path's KV cache until Resume.

    python bench/memory.py [--model smollm2-135m] [--problems 1 2 4 8] [--n 16] [--group 32]
    python bench/memory.py --model smollm2-135m --generate 64 --prompt-len 170 --max-new 154

``--generate N`` instead measures one ``engine.generate`` of N paths (4 prompts of about
``--prompt-len`` tokens, N/4 paths each, one batch when N <= --batch-size): the peak RSS of sampling
N paths of prompt + max-new tokens, e.g. "64 paths x ~324 tokens" with ``--prompt-len 187
--max-new 137``. For the numbers before this engine, run it with ``PYTHONPATH`` pointing at an
older ``stoplib`` (``git archive <commit> stoplib | tar -x -C /tmp/old``); the child processes
inherit it. The last line prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

FILLER = ("A farmer has {a} sheep and buys {b} more every week for {c} weeks. Each sheep eats {d} kilograms of hay "
          "per week, and hay costs {e} dollars per kilogram. The farmer also sells {f} sheep at the end of every "
          "second week, each for {g} dollars. ")


def make_prompts(tokenizer, count: int, prompt_len: int):
    """``count`` distinct math problems whose prompts (chat template included) have about
    ``prompt_len`` tokens: ``prompt_len`` + (-8, -4, 0, 4, 8)[j % 5], so that a batch needs left
    padding, as real prompts of different lengths do (an all-ones mask takes other kernels)."""
    from stoplib.problems import Problem
    from stoplib.prompts import build_prompt_ids

    def problem(j: int, text: str) -> Problem:
        return Problem(id=f"q{j}", prompt=text, answer="1", kind="math", source="bench")

    overhead = len(build_prompt_ids(problem(0, "x"), tokenizer)) - 1
    problems, prompts = [], []
    for j in range(count):
        text = " ".join(FILLER.format(**dict(zip("abcdefg", [(j * 5 + r * 3 + i) % 17 + 2 for i in range(7)])))
                        for r in range(1 + prompt_len // 40))
        length = prompt_len + 4 * (j % 5 - 2)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: max(1, length - overhead)]
        problems.append(problem(j, tokenizer.decode(ids)))
        prompts.append(build_prompt_ids(problems[-1], tokenizer))
    return problems, prompts


def child(args: argparse.Namespace) -> None:
    import torch

    from stoplib.engines.base import SamplingParams
    from stoplib.engines.hf import HFEngine

    torch.set_num_threads(args.threads)
    engine = HFEngine(args.model, batch_size=args.batch_size)
    params = SamplingParams(max_new_tokens=args.max_new, seed=1, logprobs=20)
    count = 4 if args.generate_paths else args.count  # generate: 4 prompts (padded), N/4 paths each
    problems, prompts = make_prompts(engine.tokenizer, count, args.prompt_len)
    engine.generate(prompts[:1], 1, params.with_(max_new_tokens=2))  # touch the (memory-mapped) weights
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    if args.generate_paths:
        paths = engine.generate(prompts, max(1, args.generate_paths // 4), params)
        tokens = sum(p.generated_tokens for g in paths for p in g)
        longest = max(len(p.prompt_ids) + p.generated_tokens for g in paths for p in g)
    else:
        from stoplib.pipeline import run_pipeline
        from stoplib.signals import make_signal

        group = None if args.group == 0 else args.group
        result = run_pipeline(engine, problems, prompts, make_signal("mean_logprob"), n=args.n, k=args.k,
                              prefix_len=args.prefix_len, params=params, max_paths_in_flight=group)
        tokens, longest = result.tokens, max(len(p) for p in prompts) + args.max_new
    print(json.dumps(dict(peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, loaded_mb=loaded,
                          tokens=tokens, seconds=time.perf_counter() - start, longest=longest,
                          prompt_len=len(prompts[0]))))


def measure(args: argparse.Namespace, **overrides) -> dict:
    cmd = [sys.executable, __file__, "--child", "--model", args.model, "--threads", str(args.threads),
           "--n", str(args.n), "--k", str(args.k), "--prefix-len", str(args.prefix_len),
           "--max-new", str(args.max_new), "--prompt-len", str(args.prompt_len),
           "--batch-size", str(args.batch_size)]
    for key, value in overrides.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m", help="a model preset or a model directory")
    parser.add_argument("--problems", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--prefix-len", type=int, default=24)
    parser.add_argument("--max-new", type=int, default=40)
    parser.add_argument("--prompt-len", type=int, default=170)
    parser.add_argument("--group", type=int, default=32, help="max_paths_in_flight of the grouped runs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generate", type=int, default=0, dest="generate_paths",
                        help="measure one generate() of this many paths instead of the pipeline")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    from stoplib.config import resolve

    args.model = resolve("tiny", model=args.model).model_path  # a preset -> its local directory

    if args.generate_paths:
        r = measure(args, generate=args.generate_paths)
        print(f"generate {args.generate_paths} paths, prompts of ~{args.prompt_len} tokens, up to {r['longest']} "
              f"tokens: peak RSS {r['peak_mb']:.0f} MB (model loaded and run once: {r['loaded_mb']:.0f} MB), "
              f"{r['tokens']} tokens in {r['seconds']:.0f}s")
        print(f"RATIOS peak/loaded={r['peak_mb'] / r['loaded_mb']:.2f}")
        return

    print(f"pipeline N={args.n} k={args.k} L={args.prefix_len} max_new={args.max_new} prompt ~{args.prompt_len} "
          f"tokens, batch {args.batch_size}; grouped = max_paths_in_flight {args.group}; one process per cell")
    print(f"{'problems':>8} {'paths':>6} | {'all at once MB':>14} {'grouped MB':>10} | {'tokens':>7}")
    rows = []
    for count in args.problems:
        together = measure(args, count=count, group=0)
        grouped = measure(args, count=count, group=args.group)
        if together["tokens"] != grouped["tokens"]:
            raise RuntimeError(f"{count} problems: grouping changed the tokens ({together['tokens']} vs "
                               f"{grouped['tokens']})")
        rows.append((count, together["peak_mb"], grouped["peak_mb"], together["loaded_mb"]))
        print(f"{count:8d} {count * args.n:6d} | {together['peak_mb']:14.0f} {grouped['peak_mb']:10.0f} | "
              f"{grouped['tokens']:7d}", flush=True)
    first, last = rows[0], rows[-1]
    print(f"RATIOS peak({last[0]} problems)/peak({first[0]}): all at once={last[1] / first[1]:.2f} "
          f"grouped={last[2] / first[2]:.2f} | above the loaded model: all at once={(last[1] - last[3]):.0f} MB "
          f"grouped={(last[2] - last[3]):.0f} MB")


if __name__ == "__main__":
    main()
