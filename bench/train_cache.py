"""STOP training on cached prefix states vs re-encoding every prefix (ratios within one run).

``train_stop`` computes the stage-1 KV cache of every prefix once (``PrefixStates``) when it fits
in ``cache_bytes``; with ``cache_bytes=0`` every step re-encodes its batch's prefixes. This bench
trains the same STOP module (same seed, fresh base model each run) for ``--epochs`` epochs both
ways, interleaved and repeated ``--repeats`` times, and prints per dataset:

- the median per-epoch time of each mode and their ratio (re-encode / cached). An epoch's time
  (``history[i]["seconds"]``) covers the training steps and the validation pass; the one-off
  construction of the cached states happens before the first epoch and is printed apart;
- the largest difference between the two modes' per-epoch training losses and validation MSEs
  (they must agree within float tolerance: the cache holds the same numbers stage 1 computes).

Datasets: ``labels L=36`` is the organism's Monte Carlo labels at the default (``small``) scale
(the store's labels stage; a cache hit once notebook 01 has run). Longer prefixes would need
labels built at that L, so ``bank L=<n>`` datasets are synthetic: prompt + the first n generated
tokens of the evaluation bank's paths that are at least n tokens long, labelled with the path's
correctness, split into training and validation by problem, capped at ``--records`` records.
A ``bank`` dataset at the default L is measured too, so the growth with L is read within one
kind of dataset.

    python bench/train_cache.py [--epochs 2] [--repeats 2] [--lengths 36 96] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from stoplib import stages  # noqa: E402
from stoplib.config import RunConfig, resolve  # noqa: E402
from stoplib.engines.hf import load_model_and_tokenizer  # noqa: E402
from stoplib.stop import StopScorer  # noqa: E402
from stoplib.train import (DEFAULT_CACHE_BYTES, LabelRecord, PrefixStates, TrainConfig,  # noqa: E402
                           load_label_records, train_stop)

Dataset = tuple[list[LabelRecord], list[LabelRecord]]


def bank_records(config: RunConfig, length: int, limit: int) -> Dataset:
    """Synthetic (train, val) records: prompt + ``length`` generated tokens of bank paths."""
    bank = stages.bank_stage(config, progress=False)
    problems = [bp for bp in bank.problems if any(len(p.token_ids) >= length for p in bp.paths)]
    val_ids = {bp.problem.id for bp in problems[:: 8]}  # one problem in eight validates
    train, val = [], []
    for bp in problems:
        for path, correct in zip(bp.paths, bp.correct):
            if len(path.token_ids) >= length:
                rec = LabelRecord(tuple(path.prompt_ids) + tuple(path.token_ids[:length]), float(correct),
                                  int(correct), bp.problem.id)
                (val if bp.problem.id in val_ids else train).append(rec)
    return train[:limit], val[: max(1, limit // 8)]


def train_once(config: RunConfig, data: Dataset, epochs: int, cache_bytes: int) -> tuple[float, list[dict]]:
    """Train a fresh STOP module; returns (wall seconds of the call, per-epoch history)."""
    base, tokenizer = load_model_and_tokenizer(config.model_path)
    torch.manual_seed(config.train.seed)  # the LoRA, [STOP] and head initialization, as stop_stage
    scorer = StopScorer(base, tokenizer, config.stop)
    train = TrainConfig(**{**config.train.__dict__, "epochs": epochs})
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train_stop(scorer, data[0], data[1], train, out, progress=False, cache_bytes=cache_bytes)
        return time.perf_counter() - start, result.history


def states_seconds(config: RunConfig, records: Sequence[LabelRecord]) -> float:
    """Time to build the cached states of ``records`` once."""
    base, tokenizer = load_model_and_tokenizer(config.model_path)
    scorer = StopScorer(base, tokenizer, config.stop)
    start = time.perf_counter()
    PrefixStates(scorer, records)
    return time.perf_counter() - start


def bench(config: RunConfig, name: str, data: Dataset, epochs: int, repeats: int) -> None:
    modes = {"cached": DEFAULT_CACHE_BYTES, "re-encode": 0}
    needed = PrefixStates.nbytes_needed(StopScorer(*load_model_and_tokenizer(config.model_path), config.stop),
                                        data[0] + data[1])
    if needed > DEFAULT_CACHE_BYTES:
        raise SystemExit(f"{name}: the states need {needed} bytes > DEFAULT_CACHE_BYTES: lower --records")
    epoch_times: dict[str, list[float]] = {m: [] for m in modes}
    histories: dict[str, list[list[dict]]] = {m: [] for m in modes}
    for r in range(repeats):
        for mode in (modes if r % 2 == 0 else reversed(list(modes))):  # alternate the order
            _, history = train_once(config, data, epochs, modes[mode])
            epoch_times[mode] += [h["seconds"] for h in history]
            histories[mode].append(history)
    build = statistics.median(states_seconds(config, data[0] + data[1]) for _ in range(repeats))
    cached, plain = (statistics.median(epoch_times[m]) for m in modes)
    diffs = {key: max(abs(a[key] - b[key]) for ha, hb in zip(histories["cached"], histories["re-encode"])
                      for a, b in zip(ha, hb))
             for key in ("train_loss", "val_mse")}
    length = statistics.median(len(r.prefix_token_ids) for r in data[0])
    print(f"{name}: {len(data[0])} train + {len(data[1])} val records of {length:.0f} tokens | epoch cached "
          f"{cached:.2f}s, re-encode {plain:.2f}s, ratio re-encode/cached {plain / cached:.2f}x | states built once "
          f"in {build:.2f}s | max |diff| train_loss {diffs['train_loss']:.2e}, val_mse {diffs['val_mse']:.2e}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--lengths", type=int, nargs="+", default=[36, 96], help="prefix lengths of the bank datasets")
    parser.add_argument("--records", type=int, default=4096, help="training records of a bank dataset at most")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = resolve("small", "toy", "hf", 0, "results", "figures")
    labels_dir, _ = stages.labels_stage(config, progress=False)
    labels = (load_label_records(labels_dir / "train.jsonl"), load_label_records(labels_dir / "val.jsonl"))
    bench(config, f"labels L={config.prefix_len}", labels, args.epochs, args.repeats)
    for length in args.lengths:
        bench(config, f"bank L={length}", bank_records(config, length, args.records), args.epochs, args.repeats)


if __name__ == "__main__":
    main()
