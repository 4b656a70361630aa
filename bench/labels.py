"""Dataset construction on the organism: one process vs several worker processes (ratios in one run).

Builds the Monte Carlo labels of the same problems at the default (``small``) settings twice, into
two temporary directories: in-process (one single-threaded engine) and sharded over ``--workers``
spawned processes. Prints tokens/s of each, the speed-up, and checks that both runs wrote
identical labels (sampling is keyed by seed, prompt, sample and position, not by the sharding).

    python bench/labels.py [--problems 400] [--workers 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from stoplib import stages  # noqa: E402
from stoplib.config import resolve  # noqa: E402
from stoplib.labels import build_labels  # noqa: E402
from stoplib.store import read_jsonl  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = replace(resolve("small"), n_train_problems=args.problems)
    problems = stages.train_problems(config)
    engine = stages.engine_for(config)  # one thread for the organism
    prompts = stages.prompts_for(problems, engine.tokenizer, config)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, workers in (("1 process", engine, 1),
                                      (f"{args.workers} workers", functools.partial(stages.engine_for, config),
                                       args.workers)):
            out = Path(tmp) / name.replace(" ", "_")
            start = time.time()
            card = build_labels(source, problems, prompts, config.labels, out, workers=workers, progress=False)
            seconds = time.time() - start
            tokens = sum(card["tokens_generated"].values())
            runs[name] = (seconds, tokens, read_jsonl(out / "labels.jsonl"))
            print(f"{name:>12}: {card['prefixes']} prefixes, {tokens:,} tokens in {seconds:.1f} s "
                  f"({tokens / seconds:,.0f} tokens/s)", flush=True)
        (t1, _, labels1), (tw, _, labelsw) = runs.values()
        print(f"speed-up with {args.workers} workers: {t1 / tw:.2f}x; identical labels: {labels1 == labelsw}")


if __name__ == "__main__":
    main()
