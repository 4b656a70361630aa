"""Run independent jobs in spawned worker processes (dataset shards, trainings of the organism).

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
