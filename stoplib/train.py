"""STOP training: soft binary cross-entropy against Monte Carlo success probabilities.

Input: JSONL records with ``prefix_token_ids`` (prompt + generated prefix) and a soft label
under any of the authors' field names (``Soft_label``, ``soft_label``, ``good_probability``,
``label_prob``, ``score``); an optional hard label (``Hard_label``, ``hard_label``, ``label``,
``class_label``) and our ``problem_id``. Per epoch: validation MSE to the soft label, Brier
score and AUROC against the hard label (path correctness) when present (else against
soft label > 0.5), and the within-problem AUROC when problem ids are present. The best
epoch by validation MSE is kept (the authors' rule). Training resumes at epoch boundaries.

Over-long prefixes raise an error naming the record, unless ``truncate="left"`` is asked for,
which keeps the last ``max_length`` tokens (the prompt's start is lost: use with care).
"""

from __future__ import annotations

import errno
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .metrics import auroc, within_problem_auroc
from .store import atomic_write_json, read_json, read_text
from transformers.cache_utils import DynamicCache

from .stop import StopScorer, common_prefix_len, left_pad

DEFAULT_CACHE_BYTES = 6 << 30  # prefix caches kept in memory for training (larger datasets re-encode)
SOFT_FIELDS = ("Soft_label", "soft_label", "good_probability", "label_prob", "score")
HARD_FIELDS = ("Hard_label", "hard_label", "label", "class_label")


@dataclass(frozen=True)
class LabelRecord:
    """One labelled prefix."""

    prefix_token_ids: tuple[int, ...]
    soft_label: float
    hard_label: int | None = None
    problem_id: str | None = None


def _first(row: dict, names: Sequence[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in row and row[name] is not None:
            return name, row[name]
    return None, None


def parse_label_record(row: dict, where: str) -> LabelRecord:
    """Validate one JSON row; errors name ``where`` (file and line) and the field."""
    ids = row.get("prefix_token_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                        for t in ids):
        raise ValueError(f"{where}: field 'prefix_token_ids' must be a non-empty list of token ids")
    name, soft = _first(row, SOFT_FIELDS)
    if name is None:
        raise ValueError(f"{where}: no soft label (looked for {', '.join(SOFT_FIELDS)})")
    if isinstance(soft, bool) or not isinstance(soft, (int, float)) or not 0.0 <= float(soft) <= 1.0:
        raise ValueError(f"{where}: field {name!r} must be a number in [0, 1], got {soft!r}")
    hname, hard = _first(row, HARD_FIELDS)
    if hname is not None:
        if hard not in (0, 1, True, False):
            raise ValueError(f"{where}: field {hname!r} must be 0 or 1, got {hard!r}")
        hard = int(hard)
    pid = row.get("problem_id")
    return LabelRecord(tuple(ids), float(soft), hard, None if pid is None else str(pid))


def load_label_records(path: str | Path) -> list[LabelRecord]:
    """Read a label JSONL file (ours or the authors' released schema)."""
    path = Path(path)
    records = []
    for line_no, line in enumerate(read_text(path, "label file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {line_no}: invalid JSON ({err})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {line_no}: expected a JSON object")
        records.append(parse_label_record(row, f"{path} line {line_no}"))
    if not records:
        raise ValueError(f"{path}: no records")
    return records


@dataclass(frozen=True)
class TrainConfig:
    """Training settings. Paper (Table 12): lr 2e-5, 15 epochs, global batch 128, bf16 on GPU."""

    lr: float = 1e-3
    epochs: int = 8
    batch_size: int = 64
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_steps: int = 20
    max_length: int = 2048
    truncate: str = "error"  # "error" | "left"
    hard_labels: bool = False  # ablation: train on the original path's correctness instead of s_mc
    seed: int = 0

    def __post_init__(self) -> None:
        from . import params

        if self.truncate not in ("error", "left"):
            raise ValueError(f"truncate must be 'error' or 'left', got {self.truncate!r}")
        for name in ("epochs", "batch_size", "grad_accum", "max_length"):
            params.positive_int(name, getattr(self, name))
        params.positive_int("warmup_steps", self.warmup_steps, 0)
        params.positive_int("seed", self.seed, 0)
        params.number("lr", self.lr, 0, float("inf"))
        if isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float)) or not 0 <= self.weight_decay < 1:
            raise ValueError(f"parameter weight_decay={self.weight_decay!r}: expected a number in [0, 1)")


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
            states: PrefixStates | None = None) -> np.ndarray:
    """Scores (probabilities) for records, in order (from their cached ``states`` if given)."""
    scorer.eval()
    if states is None:
        return scorer.score([list(r.prefix_token_ids) for r in records], batch_size=batch_size).cpu().numpy()
    out = []
    for start in range(0, len(records), batch_size):
        cache, mask = states.batch(range(start, min(start + batch_size, len(records))))
        out.append(torch.sigmoid(scorer.score_cache(cache, mask, restore=False)))
    return torch.cat(out).cpu().numpy()


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


class PrefixStates:
    """Stage-1 KV caches of a list of records, computed once and reused every epoch.

    The base model is frozen and the adapter acts only on the [STOP] positions, so a prefix's
    KV cache is the same in every epoch: caching it leaves each training step only the M
    [STOP] tokens to run. The beginning all records share (system turn, few-shot examples) is
    stored once; each record keeps the rest of its prefix. ``batch(rows)`` assembles the cache
    and attention mask of a batch, exactly as stage 1 would have produced them (up to float
    rounding).
    """

    def __init__(self, scorer: Any, records: Sequence["LabelRecord"], batch_size: int = 32) -> None:
        seqs = [list(r.prefix_token_ids) for r in records]
        self.shared = min(common_prefix_len(seqs), min(len(s) for s in seqs) - 1) if len(seqs) > 1 else 0
        device = scorer.device
        self._shared_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.shared:
            cache = scorer.encode_shared(torch.tensor([seqs[0][: self.shared]], device=device))
            self._shared_kv = [(layer.keys, layer.values) for layer in cache.layers]
        self._rest: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        for start in range(0, len(seqs), batch_size):
            part = [s[self.shared:] for s in seqs[start : start + batch_size]]
            ids, rest_mask = left_pad(part, scorer.pad_id, device)
            mask = torch.cat([torch.ones((len(part), self.shared), dtype=rest_mask.dtype, device=device), rest_mask], 1)
            cache = DynamicCache(ddp_cache_data=[(k.expand(len(part), -1, -1, -1).contiguous(),
                                                  v.expand(len(part), -1, -1, -1).contiguous())
                                                 for k, v in self._shared_kv]) if self.shared else None
            if cache is None:
                cache = scorer.encode_prefix(ids, rest_mask)
            else:
                cache = scorer.extend_prefix(cache, ids, mask)
            for row, seq in enumerate(part):
                self._rest.append([(layer.keys[row, :, -len(seq):].clone(), layer.values[row, :, -len(seq):].clone())
                                   for layer in cache.layers])
            del cache

    @staticmethod
    def nbytes_needed(scorer: Any, records: Sequence["LabelRecord"]) -> int:
        """Bytes the cached states of ``records`` take (their shared beginning counted once)."""
        config = scorer.base_model.config
        config = getattr(config, "get_text_config", lambda **_: config)(decoder=True)
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        per_token = 2 * config.num_hidden_layers * heads * head_dim * scorer.head.weight.element_size()
        seqs = [r.prefix_token_ids for r in records]
        shared = common_prefix_len(seqs)
        return per_token * (shared + sum(len(q) - shared for q in seqs))

    def batch(self, rows: Sequence[int]) -> tuple[Any, torch.Tensor]:
        """(cache, attention mask (B, S)) of the records at ``rows``, left-padded after the shared part."""
        lengths = [self._rest[r][0][0].shape[1] for r in rows]
        width = max(lengths)
        layers = []
        for i in range(len(self._rest[rows[0]])):
            ks, vs = [], []
            for r, n in zip(rows, lengths):
                k, v = self._rest[r][i]
                pad = width - n
                ks.append(torch.nn.functional.pad(k, (0, 0, pad, 0)) if pad else k)
                vs.append(torch.nn.functional.pad(v, (0, 0, pad, 0)) if pad else v)
            k, v = torch.stack(ks), torch.stack(vs)
            if self.shared:
                sk, sv = self._shared_kv[i]
                k = torch.cat([sk.expand(len(rows), -1, -1, -1), k], dim=2)
                v = torch.cat([sv.expand(len(rows), -1, -1, -1), v], dim=2)
            layers.append((k, v))
        mask = torch.zeros((len(rows), self.shared + width), dtype=torch.long, device=layers[0][0].device)
        mask[:, : self.shared] = 1
        for j, n in enumerate(lengths):
            mask[j, self.shared + width - n:] = 1
        return DynamicCache(ddp_cache_data=layers), mask


def _check_vocabulary(scorer: Any, records: Sequence[LabelRecord], which: str) -> None:
    """Token ids beyond the model's vocabulary mean labels built with another tokenizer."""
    vocab = scorer.model.get_input_embeddings().num_embeddings
    for i, rec in enumerate(records):
        top = max(rec.prefix_token_ids, default=0)
        if top >= vocab or min(rec.prefix_token_ids, default=0) < 0:
            raise ValueError(f"{which} record {i} (problem {rec.problem_id!r}) has token id {top}, outside the "
                             f"model's vocabulary of {vocab}: the labels were built with another tokenizer or model")


def _lr_lambda(warmup: int, total: int):
    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return fn


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
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rank, world = process_rank()
    progress = progress and rank == 0
    train_records, val_records = _prepare(train_records, config), _prepare(val_records, config)
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
    committed = resume_point(out_dir, _config_key(config)) if world == 1 else _shared_resume_point(out_dir, config, rank)
    if committed is not None:
        epoch_dir = _epoch_dir(out_dir, committed["epoch"])
        try:
            state = torch.load(epoch_dir / "train_state.pt", map_location="cpu", weights_only=True)
            scorer.load_weights(epoch_dir / "checkpoint")
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            result.history = json.loads((epoch_dir / "history.json").read_text())
        except Exception as err:  # files changed or damaged after their commit
            raise ValueError(f"{epoch_dir}: the committed epoch {committed['epoch']} cannot be resumed "
                             f"({type(err).__name__}: {str(err)[:200]}); remove {out_dir} (or run with --force) "
                             "to train from scratch") from err
        start_epoch = len(result.history)
        result.best_epoch, result.best_dir = int(committed["best_epoch"]), out_dir / "best"

    train_states = val_states = None
    if hasattr(scorer, "extend_prefix") and 0 < PrefixStates.nbytes_needed(scorer, train_records + val_records) <= cache_bytes:
        train_states, val_states = PrefixStates(scorer, train_records), PrefixStates(scorer, val_records)
    rng = random.Random(config.seed)
    for _ in range(start_epoch):  # keep the shuffling sequence identical after a resume
        rng.shuffle(list(range(len(train_records))))
    last_epoch = config.epochs if stop_after_epochs is None else min(config.epochs, start_epoch + stop_after_epochs)
    plan = _RowPlan()
    restore = _install_row_dropout(scorer, plan) if world > 1 else (lambda: None)
    try:
        _epochs(scorer, train_records, val_records, config, out_dir, result, optimizer, scheduler, rng,
                range(start_epoch, last_epoch), train_states, val_states, plan, rank, world, progress)
    finally:
        restore()
    scorer.eval()
    return result


def _epochs(scorer: StopScorer, train_records: Sequence[LabelRecord], val_records: Sequence[LabelRecord],
            config: TrainConfig, out_dir: Path, result: TrainResult, optimizer: Any, scheduler: Any,
            rng: random.Random, epochs: range, train_states: PrefixStates | None, val_states: PrefixStates | None,
            plan: "_RowPlan", rank: int, world: int, progress: bool) -> None:
    """The epochs of :func:`train_stop`; with ``world`` > 1 processes, this one's share of each."""
    params = scorer.trainable_parameters()
    device = scorer.device
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
        for b, batch in enumerate(iterator):
            if world > 1:
                losses.append(_data_parallel_step(scorer, train_records, batch, config, train_states, plan,
                                                  rank, world))
            else:
                recs = [train_records[i] for i in batch]
                target = torch.tensor([_target(r, config) for r in recs], device=device)
                with scorer.adapter_on():  # stage 1 runs with the adapter off (inside forward, or cached)
                    if train_states is not None:
                        logits = scorer.score_cache(*train_states.batch(batch), restore=False)
                    else:  # a beginning the batch shares (system turn, few-shot examples) is encoded once
                        logits = scorer.logits([list(r.prefix_token_ids) for r in recs])
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
                    (loss / config.grad_accum).backward()
                losses.append(float(loss.detach()))
            if (b + 1) % config.grad_accum == 0 or b + 1 == len(batches):
                if world > 1:
                    _all_reduce_gradients(params)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
        if world > 1:
            val = _metrics(_gather_predictions(scorer, val_records, val_states, rank, world), val_records)
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
            commit_epoch(out_dir, epoch + 1, result.best_epoch, _config_key(config), scorer,
                         {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, result.history)
        if world > 1:
            _barrier()  # the epoch is committed before any process goes on
        result.best_dir = out_dir / "best"


# ---------------------------------------------------------------- data parallel training
#
# Started by ``accelerate launch --num_processes N`` or ``torchrun --nproc-per-node N`` (their
# environment: RANK, WORLD_SIZE, MASTER_ADDR, ...), every process holds the scorer and the prefix
# states, and runs the rows i, i+N, ... of each global batch (the batch and the data order of one
# process). The gradients of the batch's mean loss are summed across processes before each
# optimizer step, so every process takes the same step as one process would; LoRA dropout draws
# the mask of the whole batch and applies this process's rows of it (on CPU the very mask one
# process draws). Process 0 alone writes checkpoints and progress.


def process_rank() -> tuple[int, int]:
    """(rank, number of processes) of this process's data parallel group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group a launcher set up (``WORLD_SIZE`` > 1 in the environment: gloo on
    CPU, nccl on GPUs, one GPU per local rank); returns :func:`process_rank`. A no-op otherwise."""
    import torch.distributed as dist

    world = os.environ.get("WORLD_SIZE", "1")
    if not world.isdigit():
        raise ValueError(f"WORLD_SIZE={world!r} in the environment: expected a number of processes")
    if int(world) > 1 and dist.is_available() and not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return process_rank()


def _barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def _shared_resume_point(out_dir: Path, config: TrainConfig, rank: int) -> dict[str, Any] | None:
    """:func:`resume_point` in a data parallel group: process 0 tidies the directory, the others read."""
    committed = resume_point(out_dir, _config_key(config)) if rank == 0 else None
    _barrier()
    if rank != 0 and (out_dir / PROGRESS).exists():
        committed = read_json(out_dir / PROGRESS)
    return committed


class _RowPlan:
    """The global batch size and this process's rows in it, while a data parallel step runs."""

    def __init__(self) -> None:
        self.size: int | None = None
        self.rows: list[int] = []


class _RowDropout(torch.nn.Module):
    """Dropout of this process's rows of a global batch with the mask drawn for the whole batch."""

    def __init__(self, p: float, plan: _RowPlan) -> None:
        super().__init__()
        self.p, self.plan = p, plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.plan.size is None:
            return torch.nn.functional.dropout(x, self.p, self.training)
        mask = torch.empty((self.plan.size, *x.shape[1:]), dtype=x.dtype, device=x.device)
        mask.bernoulli_(1 - self.p).div_(1 - self.p)  # what F.dropout draws on CPU for the whole batch
        return x * mask[self.plan.rows]


def _install_row_dropout(scorer: Any, plan: _RowPlan) -> Callable[[], None]:
    """Replace the LoRA dropouts of ``scorer`` by :class:`_RowDropout`; returns the undo."""
    replaced = []
    for module in scorer.model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                    dropouts[name] = _RowDropout(dropout.p, plan).train(dropout.training)
                    replaced.append((dropouts, name, dropout))

    def restore() -> None:
        for dropouts, name, dropout in replaced:
            dropouts[name] = dropout.train(dropouts[name].training)
    return restore


def _data_parallel_step(scorer: Any, records: Sequence[LabelRecord], batch: list[int], config: TrainConfig,
                        states: PrefixStates | None, plan: _RowPlan, rank: int, world: int) -> float:
    """Forward and backward of this process's rows of ``batch`` (its share of the batch's mean
    loss); returns the batch's mean loss over every process."""
    import torch.distributed as dist

    mine = list(range(rank, len(batch), world))
    rows = [batch[j] for j in mine]
    total = torch.zeros((), dtype=torch.float64, device=scorer.device)
    if rows:
        recs = [records[i] for i in rows]
        target = torch.tensor([_target(r, config) for r in recs], device=scorer.device)
        plan.size, plan.rows = len(batch), mine
        try:
            with scorer.adapter_on():
                if states is not None:
                    logits = scorer.score_cache(*states.batch(rows), restore=False)
                else:
                    logits = scorer.logits([list(r.prefix_token_ids) for r in recs])
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum")
                (loss / (len(batch) * config.grad_accum)).backward()
        finally:
            plan.size, plan.rows = None, []
        total += loss.detach().double()
    dist.all_reduce(total)
    return float(total) / len(batch)


def _all_reduce_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Sum the gradients of ``params`` over the processes (one flat tensor per dtype). A parameter
    no process has a gradient for keeps none (the optimizer skips it, as in one process)."""
    import torch.distributed as dist

    device = params[0].device
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.int64, device=device)
    dist.all_reduce(present)
    groups: dict[torch.dtype, list[torch.nn.Parameter]] = {}
    for p, count in zip(params, present.tolist()):
        if count:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            groups.setdefault(p.grad.dtype, []).append(p)
    for group in groups.values():
        flat = torch.cat([p.grad.reshape(-1) for p in group])
        dist.all_reduce(flat)
        offset = 0
        for p in group:
            p.grad.copy_(flat[offset : offset + p.grad.numel()].view_as(p.grad))
            offset += p.grad.numel()


@torch.no_grad()
def _gather_predictions(scorer: Any, records: Sequence[LabelRecord], states: PrefixStates | None,
                        rank: int, world: int, batch_size: int = 64) -> np.ndarray:
    """Scores of every record, each process scoring records rank, rank + world, ...; in order."""
    import torch.distributed as dist

    scorer.eval()
    rows = list(range(rank, len(records), world))
    parts = []
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        if states is None:
            parts.append(scorer.score([list(records[r].prefix_token_ids) for r in part], batch_size=batch_size))
        else:
            parts.append(torch.sigmoid(scorer.score_cache(*states.batch(part), restore=False)))
    mine = torch.cat(parts).cpu().numpy() if parts else np.zeros(0, np.float32)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (rows, mine))
    probs = np.zeros(len(records), dtype=mine.dtype)
    for their_rows, their_probs in gathered:
        probs[their_rows] = their_probs
    return probs


# ---------------------------------------------------------------- crash-safe epochs
#
# A training run directory holds ``epochs/NNNN/`` (``checkpoint/`` as written by
# ``save_pretrained``, ``train_state.pt``: optimizer and scheduler, ``history.json``) for the last
# committed epoch and the best one, and ``progress.json``, the commit record naming both. An epoch
# is written into ``epochs/.NNNN.tmp/``, flushed to disk and renamed; rewriting ``progress.json``
# (atomically) commits it; ``last`` and ``best`` are symbolic links derived from it. A run killed
# at any moment resumes from the last committed epoch, and what was written after it is discarded.

PROGRESS = "progress.json"
# Test-only: called with the name of each step of a commit (tests kill the run there).
_COMMIT_HOOK: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _COMMIT_HOOK is not None:
        _COMMIT_HOOK(name)


def _epoch_dir(out_dir: Path, epoch: int) -> Path:
    return out_dir / "epochs" / f"{epoch:04d}"


def _fsync_tree(directory: Path) -> None:
    """Flush every file below ``directory`` and the directories themselves to disk."""
    for path in sorted(directory.rglob("*"), reverse=True) + [directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link(link: Path, target: str) -> None:
    """Point the symbolic link ``link`` at ``target`` (relative), replacing it atomically."""
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    if link.is_dir() and not link.is_symlink():  # a checkpoint directory of an older layout
        shutil.rmtree(link)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _tidy(out_dir: Path, keep: set[int]) -> None:
    """Remove every epoch directory but ``keep``, and unfinished writes."""
    for path in (out_dir / "epochs").iterdir():
        if not (path.name.isdigit() and int(path.name) in keep):
            shutil.rmtree(path)


def _disk_error(out_dir: Path, err: OSError) -> OSError:
    if err.errno == errno.ENOSPC:
        return OSError(err.errno, f"no space left on the device of {out_dir} while saving a training epoch; "
                       "free some space and run again: training resumes from the last complete epoch")
    return err


def commit_epoch(out_dir: Path, epoch: int, best_epoch: int, config_key: str, scorer: Any,
                 state: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Write epoch ``epoch`` (the scorer's weights, optimizer state, history) and commit it."""
    epochs = out_dir / "epochs"
    tmp = epochs / f".{epoch:04d}.tmp"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        scorer.save_pretrained(tmp / "checkpoint")
        _step("checkpoint")
        torch.save(state, tmp / "train_state.pt")
        _step("train_state")
        (tmp / "history.json").write_text(json.dumps(history, indent=2))
        _fsync_tree(tmp)
        _step("written")
        final = _epoch_dir(out_dir, epoch)
        if final.exists():  # written by a run killed before it committed this epoch
            shutil.rmtree(final)
        os.replace(tmp, final)
        _step("renamed")
        atomic_write_json(out_dir / PROGRESS, {"epoch": epoch, "best_epoch": best_epoch, "config": config_key})
        _step("committed")
    except OSError as err:
        raise _disk_error(out_dir, err) from err
    _finish(out_dir, epoch, best_epoch)


def _finish(out_dir: Path, epoch: int, best_epoch: int) -> None:
    """Derived state of a committed epoch: the links and the removal of everything else."""
    _link(out_dir / "last", f"epochs/{epoch:04d}/checkpoint")
    _link(out_dir / "best", f"epochs/{best_epoch:04d}/checkpoint")
    _step("linked")
    _tidy(out_dir, {epoch, best_epoch})


def resume_point(out_dir: Path, config_key: str) -> dict[str, Any] | None:
    """The last committed epoch of the run in ``out_dir`` (None: nothing committed), after
    discarding whatever a killed run wrote past it."""
    path = out_dir / PROGRESS
    if not path.exists():
        if (out_dir / "epochs").exists():
            shutil.rmtree(out_dir / "epochs")  # a first epoch that never committed
        return None
    try:
        committed = read_json(path)
        int(committed["epoch"]), int(committed["best_epoch"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); remove {out_dir} (or run with --force) "
                         "to train from scratch") from None
    if committed.get("config") != config_key:
        raise ValueError(f"{out_dir} holds a training run with another configuration; use a new directory "
                         "or remove it")
    _finish(out_dir, int(committed["epoch"]), int(committed["best_epoch"]))
    return committed


def _config_key(config: TrainConfig) -> str:
    return json.dumps(asdict(config), sort_keys=True)
