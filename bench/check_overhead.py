"""STOP's Check overhead, as ratios within one run (paper Table 7 / §5.2).

On the same paused prefixes: time of STOP's Check (M [STOP] tokens appended to the cached KV)
vs the Launch that produced the prefixes, and vs a scorer that must re-encode the whole prefix
(as an external judge does), at several prefix lengths. The paper: STOP 0.20 s per check = 0.59%
of generation time; an external PRM 1.13 s = 3.37%.

End-of-sequence is disabled in this benchmark so that every path reaches L (untrained weights
are enough: the cost does not depend on their values).

    python bench/check_overhead.py [--model toy] [--paths 64]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from stoplib.config import resolve  # noqa: E402
from stoplib.engines.base import SamplingParams  # noqa: E402
from stoplib.engines.hf import HFEngine, load_model_and_tokenizer  # noqa: E402
from stoplib.stop import StopConfig, StopScorer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy")
    parser.add_argument("--paths", type=int, default=64, help="paths per launch (one problem)")
    parser.add_argument("--lengths", default="32,64,128,256")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = resolve("small", args.model)
    path = config.model_path
    if config.threads:
        torch.set_num_threads(config.threads)  # the organism is too small to gain from threads
    model, tok = load_model_and_tokenizer(path)
    engine = HFEngine(model, tok, batch_size=args.paths)
    engine.eos_ids = {-1}  # every path runs to L
    scorer = StopScorer(model, tok, StopConfig())
    prompt = tok.apply_chat_template([{"role": "user", "content": "a3 f*7+3 g-4"}], add_generation_prompt=True,
                                     tokenize=True)["input_ids"]
    results = {}
    for L in [int(x) for x in args.lengths.split(",")]:
        runs = []
        for rep in range(args.repeats):
            params = SamplingParams(max_new_tokens=L + 1, seed=rep, logprobs=0)
            start = time.perf_counter()
            launch = engine.launch([prompt], args.paths, L, params)
            t_launch = time.perf_counter() - start
            (paths, cache, mask), = list(engine.prefix_states(launch))
            with torch.no_grad():
                start = time.perf_counter()
                scorer.score_cache(cache, mask)
                t_check = time.perf_counter() - start
                start = time.perf_counter()
                scorer.score([p.prompt_ids + p.token_ids for p in paths], batch_size=args.paths)
                t_reencode = time.perf_counter() - start
            engine.release(launch)
            runs.append((t_check / t_launch, t_reencode / t_launch, t_launch))
        runs.sort()
        check, reencode, t_launch = runs[len(runs) // 2]
        results[L] = (check, reencode)
        print(f"L={L:4d}: launch {t_launch:6.2f}s | check/launch {check:.2%} | re-encode scorer/launch {reencode:.2%} "
              f"| re-encode/check {reencode / check:.1f}x", flush=True)
    print("RATIOS " + " ".join(f"L{L}: check={c:.2%} reencode={r:.2%}" for L, (c, r) in results.items()))


if __name__ == "__main__":
    main()
