"""Where a training epoch's time goes: STOP on cached prefix states and the text verifier.

Trains each for one epoch on the first ``--batches`` batches of the organism's labels (default
scale; notebook 01's labels stage, a cache hit once it has run) under ``torch.profiler`` and
prints the self CPU time per training step, grouped by kind of operation:

- matmul (``mm``, ``addmm``, ``bmm``): the linear layers, LoRA included, forward and backward;
- dropout RNG (``bernoulli_``): drawing LoRA's dropout masks;
- attention (``scaled_dot_product_*``), forward and backward;
- copies (``cat``, ``copy_``, ``index``, ``fill_``, ``zeros``, ...): cache assembly, gradient buffers;
- elementwise and the rest (norms, rotary embedding, activations, the optimizer's updates).

The last column is the epoch's wall time per step under the profiler; what the ops leave of it is
Python (module calls, peft, transformers' masks) and the profiler's own cost.

Then the verifier's epoch at its LoRA dropout (notebook 03's, 0.05) and at 0, alternated
``--repeats`` times in this process: the ratio is what giving up its dropout would save.

STOP's states are built before its profiled epoch (a second training on the same records reuses
them, as the notebooks' trainings do); one thread, as the notebooks' training workers.

    python bench/train_profile.py [--batches 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from stoplib import stages  # noqa: E402
from stoplib.config import RunConfig, resolve  # noqa: E402
from stoplib.engines.hf import load_model_and_tokenizer  # noqa: E402
from stoplib.signals.verifier import TextVerifier  # noqa: E402
from stoplib.stage_engine import load_tokenizer  # noqa: E402
from stoplib.stage_training import variant_configs, verifier_config, verifier_train_config  # noqa: E402
from stoplib.stop import StopScorer  # noqa: E402
from stoplib.train import LabelRecord, load_label_records, train_stop, train_verifier  # noqa: E402

KINDS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm"),
    "dropout RNG": ("aten::bernoulli_",),
    "attention": ("aten::_scaled_dot_product",),
    "copies": ("aten::cat", "aten::copy_", "aten::index", "aten::fill_", "aten::zero_", "aten::zeros",
               "aten::index_put_", "aten::clone", "aten::contiguous"),
}


def kind_of(name: str) -> str:
    return next((kind for kind, prefixes in KINDS.items() if name.startswith(prefixes)), "elementwise and rest")


def profiled(train: Callable[[], Any], steps: int) -> tuple[dict[str, float], float]:
    """(self CPU ms per step by kind, wall ms per step) of ``train()``, one epoch of ``steps`` steps."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = train()
    by_kind: dict[str, float] = {}
    for event in prof.key_averages():
        kind = kind_of(event.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + event.self_cpu_time_total / 1000 / steps
    return by_kind, result.history[-1]["seconds"] * 1000 / steps


def stop_epoch(config: RunConfig, data: tuple[list[LabelRecord], list[LabelRecord]]) -> Any:
    stop, train = variant_configs(config, "stop")
    base, tokenizer = load_model_and_tokenizer(config.model_path)
    torch.manual_seed(train.seed)
    scorer = StopScorer(base, tokenizer, stop)
    with tempfile.TemporaryDirectory() as out:
        return train_stop(scorer, data[0], data[1], replace(train, epochs=1), out, progress=False)


def verifier_epoch(config: RunConfig, data: tuple[list[LabelRecord], list[LabelRecord]], dropout: float) -> Any:
    torch.manual_seed(config.train.seed)
    verifier = TextVerifier.from_base(config.model_path, replace(verifier_config(config), lora_dropout=dropout))
    with tempfile.TemporaryDirectory() as out:
        return train_verifier(verifier, data[0], data[1], replace(verifier_train_config(config), epochs=1), out,
                              tokenizer=load_tokenizer(config), progress=False)


def print_table(rows: dict[str, tuple[dict[str, float], float]]) -> None:
    kinds = list(KINDS) + ["elementwise and rest"]
    print(f"{'ms per step':<24}" + "".join(f"{kind:>22}" for kind in kinds) + f"{'ops':>8}{'wall':>8}")
    for name, (by_kind, wall) in rows.items():
        total = sum(by_kind.values())
        cells = "".join(f"{by_kind.get(k, 0.0):>13.1f} ({by_kind.get(k, 0.0) / total:>4.0%})" for k in kinds)
        print(f"{name:<24}{cells}{total:>8.1f}{wall:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=30, help="training batches of the profiled epoch")
    parser.add_argument("--repeats", type=int, default=2, help="alternations of the verifier's two dropouts")
    args = parser.parse_args()
    if args.batches < 1 or args.repeats < 1:
        parser.error("--batches and --repeats must be at least 1")
    torch.set_num_threads(1)
    config = resolve("small", "toy", "hf", 0, "results", "figures")
    labels_dir, _ = stages.labels_stage(config, progress=False)
    train = load_label_records(labels_dir / "train.jsonl")[: args.batches * config.train.batch_size]
    data = (train, load_label_records(labels_dir / "val.jsonl")[: config.train.batch_size])
    dropout = verifier_config(config).lora_dropout  # the verifier notebook 03 trains
    stop_epoch(config, data)  # builds the cached states the profiled training reuses
    rows = {"STOP (cached states)": profiled(lambda: stop_epoch(config, data), args.batches),
            "verifier": profiled(lambda: verifier_epoch(config, data, dropout), args.batches)}
    print(f"{len(train)} training records in batches of {config.train.batch_size}; self CPU time under the profiler")
    print_table(rows)
    seconds: dict[float, list[float]] = {dropout: [], 0.0: []}
    for r in range(args.repeats):
        for p in ((dropout, 0.0) if r % 2 == 0 else (0.0, dropout)):
            seconds[p].append(verifier_epoch(config, data, p).history[-1]["seconds"])
    with_dropout, without = (statistics.median(seconds[p]) for p in (dropout, 0.0))
    print(f"verifier epoch ({args.batches} batches): dropout {dropout} {with_dropout:.2f}s, dropout 0 {without:.2f}s, "
          f"ratio {with_dropout / without:.2f}x")


if __name__ == "__main__":
    main()
