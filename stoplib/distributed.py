"""Data parallel STOP training: the process group and one global batch split over processes.

Started by ``accelerate launch --num_processes N`` or ``torchrun --nproc-per-node N`` (their
environment: RANK, WORLD_SIZE, MASTER_ADDR, ...), every process holds the scorer and the prefix
states, and runs the rows i, i+N, ... of each global batch (the batch and the data order of one
process). The gradients of the batch's mean loss are summed across processes before each
optimizer step, so every process takes the same step as one process would, up to float
rounding; LoRA dropout draws the mask of the whole batch and applies this process's rows of it
(on CPU the very mask one process draws). Process 0 alone writes checkpoints and progress.

With a fixed number of parts P (``train_stop(parts=P)``), part j of a batch being its rows j,
j+P, ..., each part runs as a batch of its own with a random seed of its own (its dropout masks),
and a process runs the parts i, i+N, ... (N dividing P): one process and N processes compute
every part alike. The training is then the same to the bit for P = 2 in one or two processes
with ``grad_accum`` 1 (two gradients summed, in either order); otherwise the sums of the parts'
gradients are grouped differently (float rounding).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable, ContextManager, Iterator, Sequence

import numpy as np
import torch


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


def barrier() -> None:
    """Wait for every process of the group."""
    import torch.distributed as dist

    dist.barrier()


class RowPlan:
    """The global batch size and this process's rows in it, while this process's rows run
    (:meth:`active`); outside, dropout draws as in one process (a beginning the batch shares)."""

    def __init__(self) -> None:
        self.size: int | None = None
        self.rows: list[int] = []

    @contextlib.contextmanager
    def active(self, size: int, rows: list[int]) -> Iterator[None]:
        self.size, self.rows = size, rows
        try:
            yield
        finally:
            self.size, self.rows = None, []


class RowDropout(torch.nn.Module):
    """Dropout of this process's rows of a global batch with the mask drawn for the whole batch."""

    def __init__(self, p: float, plan: RowPlan) -> None:
        super().__init__()
        self.p, self.plan = p, plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.plan.size is None:
            return torch.nn.functional.dropout(x, self.p, self.training)
        mask = torch.empty((self.plan.size, *x.shape[1:]), dtype=x.dtype, device=x.device)
        mask.bernoulli_(1 - self.p).div_(1 - self.p)  # what F.dropout draws on CPU for the whole batch
        return x * mask[self.plan.rows]


def install_row_dropout(scorer: Any, plan: RowPlan) -> Callable[[], None]:
    """Replace the LoRA dropouts of ``scorer`` by :class:`RowDropout`; returns the undo."""
    replaced = []
    for module in scorer.model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, dropout in list(dropouts.items()):
                if isinstance(dropout, torch.nn.Dropout) and dropout.p > 0:
                    dropouts[name] = RowDropout(dropout.p, plan).train(dropout.training)
                    replaced.append((dropouts, name, dropout))

    def restore() -> None:
        for dropouts, name, dropout in replaced:
            dropouts[name] = dropout.train(dropouts[name].training)
    return restore


def data_parallel_step(scorer: Any, batch: list[int],
                       loss_sum: Callable[[list[int], Callable[[], ContextManager[None]]], torch.Tensor],
                       grad_accum: int, plan: RowPlan, rank: int, world: int) -> float:
    """Forward and backward of this process's rows of ``batch`` (its share of the batch's mean
    loss; ``loss_sum(mine, on_rows)``: the summed loss of the batch's positions ``mine``, with
    ``on_rows()`` entered around their forward); returns the batch's mean loss over every process."""
    import torch.distributed as dist

    mine = list(range(rank, len(batch), world))
    total = torch.zeros((), dtype=torch.float64, device=scorer.device)
    if mine:
        with scorer.adapter_on():
            loss = loss_sum(mine, lambda: plan.active(len(batch), mine))
            (loss / (len(batch) * grad_accum)).backward()
        total += loss.detach().double()
    dist.all_reduce(total)
    return float(total) / len(batch)


def parts_step(scorer: Any, batch: list[int], loss_sum: Callable[[list[int]], torch.Tensor], grad_accum: int,
               parts: int, part_seed: Callable[[int], int], rank: int, world: int) -> float:
    """Forward and backward of this process's parts of ``batch``: part j holds the rows j, j +
    parts, ... and runs, as a batch of its own, after ``torch.manual_seed(part_seed(j))``; this
    process runs the parts j with j % world == rank. ``loss_sum(rows)``: the summed loss of the
    records at ``rows``. Each part adds its share of the batch's mean loss to the gradients, so
    one process and a group of processes (a divisor of ``parts``) compute every part alike.
    Returns the batch's mean loss over every process."""
    total = torch.zeros((), dtype=torch.float64, device=scorer.device)
    for part in range(rank, parts, world):
        rows = batch[part::parts]
        if not rows:
            continue
        torch.manual_seed(part_seed(part))
        with scorer.adapter_on():
            loss = loss_sum(rows)
            (loss / (len(batch) * grad_accum)).backward()
        total += loss.detach().double()
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(total)
    return float(total) / len(batch)


def all_reduce_gradients(params: Sequence[torch.nn.Parameter]) -> None:
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


def gather_scores(score_rows: Callable[[list[int]], np.ndarray], n: int, rank: int, world: int,
                  parts: int | None = None) -> np.ndarray:
    """Scores of ``n`` records in ``parts`` parts (part j: rows j, j + parts, ...; default
    ``parts`` = ``world``), each process scoring its parts (j % world == rank) with
    ``score_rows``; in order, on every process."""
    parts = parts or world
    mine = [(rows, score_rows(rows)) for rows in (list(range(part, n, parts)) for part in range(rank, parts, world))
            if rows]
    gathered: list[Any] = [mine]
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, mine)
    probs = None
    for their in gathered:
        for rows, scores in their:
            if probs is None:
                probs = np.zeros(n, dtype=scores.dtype)
            probs[rows] = scores
    return probs if probs is not None else np.zeros(0, np.float32)
