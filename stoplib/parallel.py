"""Run independent jobs in spawned worker processes (dataset shards, trainings of the organism),
or one job in a data parallel group of processes (a training too long for one core).

A 0.3M-parameter model gains nothing from intra-op threads, so on a CPU one single-threaded
process per core is the way to use the cores. Workers die with their parent (Linux
``PR_SET_PDEATHSIG``), and on any failure or interrupt the parent kills the others, so no orphan
keeps writing into the store; every job must itself be resumable (the stages are).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable, Sequence


def run_in_processes(target: Callable[..., None], jobs: Sequence[tuple[Any, ...]], workers: int, *,
                     threads: int | None = None, on_tick: Callable[[], None] | None = None,
                     poll_s: float = 0.5) -> None:
    """Call ``target(*job)`` for every job, at most ``workers`` at a time, each in a new process.

    ``target`` and the jobs must be picklable (``spawn`` start method). ``threads``: torch
    threads per worker (default: the cores divided among the workers). ``on_tick()`` runs in the
    parent while it waits (progress display). Raises RuntimeError naming the first job whose
    process failed, after killing the rest.
    """
    import multiprocessing

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    queue = list(enumerate(jobs))
    running: list[Any] = []
    try:
        while queue or running:
            while queue and len(running) < workers:
                index, job = queue.pop(0)
                proc = context.Process(target=_child, args=(target, job, threads), name=f"job-{index}", daemon=True)
                proc.start()
                running.append(proc)
            time.sleep(poll_s)
            if on_tick is not None:
                on_tick()
            for proc in [p for p in running if not p.is_alive()]:
                proc.join()
                if proc.exitcode != 0:
                    raise RuntimeError(f"worker {proc.name} exited with code {proc.exitcode} (its traceback is "
                                       "above); what it wrote is kept: rerun to continue")
                running.remove(proc)
    finally:
        for proc in running:
            if proc.is_alive():
                proc.kill()
            proc.join()


def run_process_group(target: Callable[..., None], job: tuple[Any, ...], world: int, *, threads: int = 1,
                      poll_s: float = 0.5) -> None:
    """Call ``target(*job)`` in ``world`` new processes that form one data parallel group on this
    machine (the environment ``torchrun`` gives: RANK, WORLD_SIZE, MASTER_ADDR, ...; gloo on
    CPU), each with ``threads`` torch threads. Raises RuntimeError naming the first process that
    failed, after killing the rest."""
    import multiprocessing

    if world < 1:
        raise ValueError(f"world must be >= 1, got {world}")
    port = _free_port()
    context = multiprocessing.get_context("spawn")
    procs = []
    try:
        for rank in range(world):
            env = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                   "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
            proc = context.Process(target=_group_member, args=(target, job, threads, env), name=f"rank-{rank}",
                                   daemon=True)
            proc.start()
            procs.append(proc)
        while any(p.is_alive() for p in procs):
            time.sleep(poll_s)
            failed = [p for p in procs if not p.is_alive() and p.exitcode != 0]
            if failed:
                raise RuntimeError(f"process {failed[0].name} of the data parallel group exited with code "
                                   f"{failed[0].exitcode} (its traceback is above); what it wrote is kept: rerun "
                                   "to continue")
        for proc in procs:
            proc.join()
            if proc.exitcode != 0:
                raise RuntimeError(f"process {proc.name} of the data parallel group exited with code {proc.exitcode}")
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            proc.join()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _group_member(target: Callable[..., None], job: tuple[Any, ...], threads: int, env: dict[str, str]) -> None:
    os.environ.update(env)
    try:
        _child(target, job, threads)
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _child(target: Callable[..., None], job: tuple[Any, ...], threads: int) -> None:
    die_with_parent()
    import torch

    torch.set_num_threads(threads)
    target(*job)


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphan keeps writing)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the parent still kills its workers on any exception it sees
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
