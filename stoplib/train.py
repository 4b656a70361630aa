"""STOP training: soft binary cross-entropy against Monte Carlo success probabilities.

Input: label records (:mod:`stoplib.label_records`: ``prefix_token_ids`` and a soft label, an
optional hard label and ``problem_id``). Per epoch: validation MSE to the soft label, Brier
score and AUROC against the hard label (path correctness) when present (else against
soft label > 0.5), and the within-problem AUROC when problem ids are present. The best
epoch by validation MSE is kept (the authors' rule). Training resumes at epoch boundaries
(:mod:`stoplib.epoch_commits`), runs on cached prefix states when they fit in memory
(:mod:`stoplib.prefix_states`) and over several processes under a launcher
(:mod:`stoplib.distributed`).

Over-long prefixes raise an error naming the record, unless ``truncate="left"`` is asked for,
which keeps the last ``max_length`` tokens (the prompt's start is lost: use with care).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ContextManager, Sequence

import numpy as np
import torch

from .distributed import (RowPlan, all_reduce_gradients, barrier, data_parallel_step, gather_scores,
                          init_distributed, install_row_dropout, parts_step, process_rank)
from .epoch_commits import PROGRESS, commit_epoch, config_key, resume_point, restore_epoch
from .label_records import HARD_FIELDS, SOFT_FIELDS, LabelRecord, label_subset, load_label_records, parse_label_record
from .metrics import auroc, within_problem_auroc
from .models import model_identity
from .prefix_states import PrefixStates
from .signals.type1 import Decode, text_decoder
from .signals.verifier import TextVerifier, retokenize_records
from .stage_configs import TrainConfig
from .stop import StopScorer
from .store import read_json

# Also importable from here (stages, the CLI, tests and bench import them from stoplib.train).
__all__ = ["DEFAULT_CACHE_BYTES", "HARD_FIELDS", "SOFT_FIELDS", "LabelRecord", "PrefixStates", "TrainConfig",
           "TrainResult", "evaluate", "init_distributed", "load_label_records", "parse_label_record", "predict",
           "process_rank", "train_stop", "train_verifier"]

DEFAULT_CACHE_BYTES = 6 << 30  # prefix caches kept in memory for training (larger datasets re-encode)


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_dir: Path | None = None


def _prepare(records: Sequence[LabelRecord], config: TrainConfig) -> list[LabelRecord]:
    out = []
    for i, rec in enumerate(records):
        if len(rec.prefix_token_ids) > config.max_length:
            if config.truncate == "error":
                raise ValueError(
                    f"record {i} (problem {rec.problem_id}) has {len(rec.prefix_token_ids)} tokens > "
                    f"max_length {config.max_length}; raise max_length or pass truncate='left'")
            rec = LabelRecord(rec.prefix_token_ids[-config.max_length:], rec.soft_label, rec.hard_label, rec.problem_id)
        if config.hard_labels and rec.hard_label is None:
            raise ValueError(f"record {i}: hard_labels=True but the record has no hard label")
        out.append(rec)
    return out


def _target(rec: LabelRecord, config: TrainConfig) -> float:
    return float(rec.hard_label) if config.hard_labels else rec.soft_label


@torch.no_grad()
def predict(scorer: StopScorer, records: Sequence[LabelRecord], batch_size: int = 64,
            states: PrefixStates | None = None, rows: Sequence[int] | None = None) -> np.ndarray:
    """Scores (probabilities) for records (those at ``rows`` if given), in order (from their
    cached ``states`` if given)."""
    scorer.eval()
    rows = range(len(records)) if rows is None else rows
    parts = []
    for start in range(0, len(rows), batch_size):
        part = list(rows[start : start + batch_size])
        if states is None:
            parts.append(scorer.score([list(records[r].prefix_token_ids) for r in part], batch_size=batch_size))
        else:
            parts.append(torch.sigmoid(scorer.score_cache(*states.batch(part), restore=False)))
    return torch.cat(parts).cpu().numpy() if parts else np.zeros(0, np.float32)


def evaluate(scorer: StopScorer, records: Sequence[LabelRecord], batch_size: int = 64,
             states: PrefixStates | None = None) -> dict[str, float]:
    """Validation metrics: MSE to soft labels, Brier and AUROC vs hard labels, within-problem AUROC."""
    return _metrics(predict(scorer, records, batch_size, states), records)


def _metrics(probs: np.ndarray, records: Sequence[LabelRecord]) -> dict[str, float]:
    """:func:`evaluate`'s metrics of the scores ``probs`` of ``records``."""
    soft = np.array([r.soft_label for r in records])
    has_hard = all(r.hard_label is not None for r in records)
    outcome = np.array([r.hard_label for r in records]) if has_hard else (soft > 0.5).astype(int)
    metrics = {"mse": float(np.mean((probs - soft) ** 2)), "auroc": auroc(probs, outcome)}
    if has_hard:
        metrics["brier"] = float(np.mean((probs - outcome) ** 2))
    if all(r.problem_id is not None for r in records):
        metrics["within_auroc"] = within_problem_auroc(probs, outcome, [r.problem_id for r in records])
    return metrics


def _batch_loss(scorer: StopScorer, records: Sequence[LabelRecord], batch: list[int], config: TrainConfig,
                states: PrefixStates | None, reduction: str = "mean", mine: list[int] | None = None,
                on_rows: Callable[[], ContextManager[Any]] = nullcontext) -> torch.Tensor:
    """Soft BCE of the records of ``batch`` (run it with the adapter on); with ``mine``, of those
    positions of the batch only, laid out as in the whole batch, ``on_rows()`` around their
    forward (one process's share of a data parallel batch)."""
    rows = batch if mine is None else [batch[j] for j in mine]
    target = torch.tensor([_target(records[i], config) for i in rows], device=scorer.device)
    if states is not None:
        with on_rows():
            logits = scorer.score_cache(*states.batch(rows), restore=False)
    else:  # a beginning the batch shares (system turn, few-shot examples) is encoded once
        logits = scorer.logits([list(records[i].prefix_token_ids) for i in batch], rows=mine, on_rows=on_rows)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction=reduction)


def _check_vocabulary(scorer: Any, records: Sequence[LabelRecord], which: str) -> None:
    """Token ids beyond the model's vocabulary mean labels built with another tokenizer."""
    vocab = scorer.model.get_input_embeddings().num_embeddings
    for i, rec in enumerate(records):
        top = max(rec.prefix_token_ids, default=0)
        if top >= vocab or min(rec.prefix_token_ids, default=0) < 0:
            raise ValueError(f"{which} record {i} (problem {rec.problem_id!r}) has token id {top}, outside the "
                             f"model's vocabulary of {vocab}: the labels were built with another tokenizer or model")


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return fn


# The prefix states last built in this process, by (base model content, dtype, device, records):
# trainings one after another on the same labels (seeds, ablations, variants) build them once.
_LAST_STATES: dict[tuple[Any, ...], tuple[PrefixStates, PrefixStates]] = {}


def _prefix_states(scorer: StopScorer, train_records: Sequence[LabelRecord],
                   val_records: Sequence[LabelRecord]) -> tuple[PrefixStates, PrefixStates]:
    """Cached stage-1 states of the training and validation records (stage 1 is the frozen base
    model with the adapter off, so they do not depend on the scorer's adapter, [STOP] tokens or
    head). Reused when the base model is a local directory with the same content."""
    base = Path(str(scorer.config.base_model or ""))
    key = None
    if scorer.config.base_model and base.is_dir():
        digest = hashlib.sha256()
        for part in (train_records, val_records):
            for rec in part:
                digest.update(np.asarray(rec.prefix_token_ids, dtype=np.int64).tobytes() + b"|")
            digest.update(b"#")
        attention = getattr(scorer.base_model.config, "_attn_implementation", None)
        key = (model_identity(base)["sha256"], attention, str(scorer.head.weight.dtype), str(scorer.device),
               digest.hexdigest())
        if key in _LAST_STATES:
            return _LAST_STATES[key]
    states = PrefixStates(scorer, train_records), PrefixStates(scorer, val_records)
    _LAST_STATES.clear()
    if key is not None:
        _LAST_STATES[key] = states
    return states


def _shared_resume_point(out_dir: Path, config: TrainConfig, rank: int) -> dict[str, Any] | None:
    """:func:`resume_point` in a data parallel group: process 0 tidies the directory, the others read."""
    committed = resume_point(out_dir, config_key(config)) if rank == 0 else None
    barrier()
    if rank != 0 and (out_dir / PROGRESS).exists():
        committed = read_json(out_dir / PROGRESS)
    return committed


def train_stop(
    scorer: StopScorer,
    train_records: Sequence[LabelRecord],
    val_records: Sequence[LabelRecord],
    config: TrainConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    parts: int | None = None,
) -> TrainResult:
    """Train ``scorer`` in place; best checkpoint by validation MSE -> ``out_dir/best``.

    Every epoch is committed atomically (``commit_epoch``; ``out_dir/last`` is the last one);
    calling again with the same ``out_dir`` resumes after the last committed epoch, also after a
    kill at any moment, and ends with the same checkpoint as an uninterrupted run.
    ``stop_after_epochs`` ends this call after that many epochs (a time budget); a later call
    continues.

    A STOP scorer whose prefix caches fit in ``cache_bytes`` (:class:`PrefixStates`) computes
    them once and trains on them: each step runs only the [STOP] tokens. Otherwise (and for
    the text verifier, whose adapter acts on every position) every step encodes its prefixes,
    the beginning a batch shares once (``PrefixScorer.logits``; exact, except that dropout then
    draws one mask for the shared part of the batch).

    ``parts``: compute each batch (and the validation scores) in this many parts, rows j, j +
    parts, ..., each a batch of its own with a random seed of its own (:mod:`stoplib.distributed`),
    so that one process and a data parallel group whose size divides ``parts`` train alike (to the
    bit for 2 parts and ``grad_accum`` 1). None: one part per process (the training then depends
    on the number of processes up to float rounding).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = process_rank()
    progress = progress and rank == 0
    if parts is not None and (parts < 1 or parts % world):
        raise ValueError(f"parts={parts} must be a positive multiple of the {world} processes")
    train_records = label_subset(_prepare(train_records, config), config.label_fraction)
    val_records = _prepare(val_records, config)
    if not train_records or not val_records:
        raise ValueError("training needs at least one training and one validation record")
    _check_vocabulary(scorer, train_records, "training")
    _check_vocabulary(scorer, val_records, "validation")
    steps_per_epoch = math.ceil(len(train_records) / (config.batch_size * config.grad_accum))
    params = scorer.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config.warmup_steps, steps_per_epoch * config.epochs))
    result, start_epoch = TrainResult(), 0
    committed = resume_point(out_dir, config_key(config)) if world == 1 else _shared_resume_point(out_dir, config, rank)
    if committed is not None:
        result.history = restore_epoch(out_dir, committed, scorer, optimizer, scheduler)
        start_epoch = len(result.history)
        result.best_epoch, result.best_dir = int(committed["best_epoch"]), out_dir / "best"

    train_states = val_states = None
    if hasattr(scorer, "extend_prefix") and 0 < PrefixStates.nbytes_needed(scorer, train_records + val_records) <= cache_bytes:
        train_states, val_states = _prefix_states(scorer, train_records, val_records)
    rng = random.Random(config.seed)
    for _ in range(start_epoch):  # keep the shuffling sequence identical after a resume
        rng.shuffle(list(range(len(train_records))))
    last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, start_epoch + stop_after_epochs)
    plan = RowPlan()
    restore = install_row_dropout(scorer, plan) if world > 1 and parts is None else (lambda: None)
    try:
        _epochs(scorer, train_records, val_records, config, out_dir, result, optimizer, scheduler, rng,
                range(start_epoch, last_epoch), train_states, val_states, plan, rank, world, parts, progress)
    finally:
        restore()
    scorer.eval()
    return result


def _epochs(scorer: StopScorer, train_records: Sequence[LabelRecord], val_records: Sequence[LabelRecord],
            config: TrainConfig, out_dir: Path, result: TrainResult, optimizer: Any, scheduler: Any,
            rng: random.Random, epochs: range, train_states: PrefixStates | None, val_states: PrefixStates | None,
            plan: RowPlan, rank: int, world: int, parts: int | None, progress: bool) -> None:
    """The epochs of :func:`train_stop`; with ``world`` > 1 processes, this one's share of each
    (of each batch's ``parts``)."""
    params = scorer.trainable_parameters()
    for epoch in epochs:
        start = time.time()
        torch.manual_seed(config.seed * 1000 + epoch)  # dropout: same stream after a resume
        order = list(range(len(train_records)))
        rng.shuffle(order)
        scorer.train()
        losses = []
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        iterator = batches
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False)
        # on cached states stage 1 never runs: the adapter stays on for the epoch instead of being
        # switched (a walk over every module) at each step
        with scorer.adapter_on() if train_states is not None else nullcontext():
            for b, batch in enumerate(iterator):
                if parts is not None:
                    def part_seed(part: int, epoch: int = epoch, b: int = b) -> int:
                        return ((config.seed * 1000 + epoch) * 1_000_003 + b) * parts + part

                    losses.append(parts_step(scorer, batch, lambda rows: _batch_loss(
                        scorer, train_records, rows, config, train_states, "sum"), config.grad_accum, parts, part_seed,
                        rank, world))
                elif world > 1:
                    def loss_sum(mine: list[int], on_rows: Callable[[], ContextManager[Any]], batch=batch) -> torch.Tensor:
                        return _batch_loss(scorer, train_records, batch, config, train_states, "sum", mine, on_rows)

                    losses.append(data_parallel_step(scorer, batch, loss_sum, config.grad_accum, plan, rank, world))
                else:
                    with scorer.adapter_on():  # stage 1 runs with the adapter off (inside forward, or cached)
                        loss = _batch_loss(scorer, train_records, batch, config, train_states)
                        (loss / config.grad_accum).backward()
                    losses.append(float(loss.detach()))
                if (b + 1) % config.grad_accum == 0 or b + 1 == len(batches):
                    if world > 1:
                        all_reduce_gradients(params)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
        if world > 1 or parts is not None:
            probs = gather_scores(lambda rows: predict(scorer, val_records, states=val_states, rows=rows),
                                  len(val_records), rank, world, parts)
            val = _metrics(probs, val_records)
        else:
            val = evaluate(scorer, val_records, states=val_states)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "seconds": time.time() - start,
               **{f"val_{k}": v for k, v in val.items()}}
        result.history.append(row)
        if progress:
            print(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        if result.best_epoch < 0 or row["val_mse"] < min(h["val_mse"] for h in result.history[:-1]):
            result.best_epoch = epoch + 1
        if rank == 0:
            commit_epoch(out_dir, epoch + 1, result.best_epoch, config_key(config), scorer,
                         {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, result.history)
        if world > 1:
            barrier()  # the epoch is committed before any process goes on
        result.best_dir = out_dir / "best"


def train_verifier(verifier: TextVerifier, train_records: Sequence[LabelRecord], val_records: Sequence[LabelRecord],
                   config: TrainConfig, out_dir: str | Path, *, decode: Decode | None = None, tokenizer: Any = None,
                   progress: bool = True, stop_after_epochs: int | None = None,
                   parts: int | None = None) -> TrainResult:
    """Train the text verifier ``verifier`` in place with soft BCE on STOP's label records.

    The records hold the *generator's* token ids: ``decode`` (or the generator's ``tokenizer``)
    turns them into text, which the verifier re-tokenizes. ``config.max_length`` applies to the
    verifier's ids. The loop is :func:`train_stop`'s (best checkpoint by validation MSE in
    ``out_dir/best``; a later call with the same ``out_dir`` resumes after the last epoch;
    ``parts``: as there).
    """
    dec = text_decoder(tokenizer, decode)
    if dec is None:
        raise ValueError("train_verifier needs decode= or tokenizer= (the generator's) to read the records as text")
    return train_stop(verifier, retokenize_records(train_records, dec, verifier),  # type: ignore[arg-type]
                      retokenize_records(val_records, dec, verifier), config, out_dir,
                      progress=progress, stop_after_epochs=stop_after_epochs, parts=parts)
