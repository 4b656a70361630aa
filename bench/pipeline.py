"""Online pipeline vs no pruning: do token savings show up as time savings? (ratios in one run)

On the organism: 64 paths per problem pruned to 8 at L = 36 with a signal, against running all 64
to completion. The pipeline's token count is compared with what the replay accounting predicts on
the very same paths (the engine's counter-based sampling makes the pipeline's paths equal to the
uninterrupted ones), and its wall time ratio with the token ratio.

    python bench/pipeline.py [--problems 16] [--signal random]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from stoplib.config import resolve  # noqa: E402
from stoplib.engines.hf import HFEngine  # noqa: E402
from stoplib.grading import grade  # noqa: E402
from stoplib.pipeline import run_pipeline  # noqa: E402
from stoplib.prompts import build_prompt_ids  # noqa: E402
from stoplib.signals import make_signal  # noqa: E402
from stoplib.toy.task import make_problems  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--signal", default="mean_logprob")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--k", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = resolve("small")
    engine = HFEngine(config.model_path, batch_size=args.n * 4, attn_implementation="eager")
    problems = make_problems(args.problems, seed=99, split="eval")
    prompts = [build_prompt_ids(p, engine.tokenizer) for p in problems]
    params, L = config.sampling, config.prefix_len
    engine.generate(prompts[:1], 4, params)  # warm-up

    start = time.perf_counter()
    full = engine.generate(prompts, args.n, params)
    t_full = time.perf_counter() - start
    tokens_full = sum(p.generated_tokens for g in full for p in g)

    signal = make_signal(args.signal)
    start = time.perf_counter()
    result = run_pipeline(engine, problems, prompts, signal, n=args.n, k=args.k, prefix_len=L, params=params)
    t_pipe = time.perf_counter() - start

    predicted = 0  # replay accounting on the uninterrupted paths, with the pipeline's kept set
    for group, pr in zip(full, result.problems):
        kept = {r.sample_index for r in pr.records if r.kept}
        predicted += sum(p.generated_tokens if p.sample_index in kept else min(L, p.generated_tokens) for p in group)
    token_ratio, time_ratio = result.tokens / tokens_full, t_pipe / t_full
    print(f"no pruning: {tokens_full} tokens in {t_full:.1f}s | pipeline {args.n}->{args.k} at L={L}: "
          f"{result.tokens} tokens (predicted {predicted}) in {t_pipe:.1f}s")
    avg_full = np.mean([[grade(engine.tokenizer.decode(p.token_ids, skip_special_tokens=True), problem).correct
                         for p in group] for problem, group in zip(problems, full)])
    print(f"signal {args.signal}: avg@{args.k}|{args.n} = {result.avg_kept:.3f} vs avg@{args.n} = {avg_full:.3f}")
    print(f"RATIOS tokens pipeline/full={token_ratio:.3f} time pipeline/full={time_ratio:.3f} "
          f"time/token ratio={time_ratio / token_ratio:.2f} tokens pipeline/predicted={result.tokens / predicted:.3f}")


if __name__ == "__main__":
    main()
