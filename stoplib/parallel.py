"""Run independent jobs in spawned worker processes (dataset shards, trainings of the organism).

A 0.3M-parameter model gains nothing from intra-op threads, so on a CPU one single-threaded
process per core is the way to use the cores. Workers die with their parent (Linux
``PR_SET_PDEATHSIG``), and on any failure or interrupt the parent kills the others, so no orphan
keeps writing into the store; every job must itself be resumable (the stages are).
"""

from __future__ import annotations

import os
import queue
import signal
import time
import traceback
from typing import Any, Callable, Sequence


def run_in_processes(target: Callable[..., None], jobs: Sequence[tuple[Any, ...]], workers: int, *,
                     threads: int | None = None, on_tick: Callable[[], None] | None = None,
                     poll_s: float = 0.5) -> None:
    """Call ``target(*job)`` for every job in ``workers`` new processes, each taking the next job
    when it finishes one (in order; a process keeps what it loaded for the next job: the modules,
    cached prefix states).

    ``target`` and the jobs must be picklable (``spawn`` start method). ``threads``: torch
    threads per worker (default: the cores divided among the workers). ``on_tick()`` runs in the
    parent while it waits (progress display). Raises RuntimeError naming the first job that
    failed (its traceback is printed by the worker), after killing the rest.
    """
    import multiprocessing

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    workers = min(workers, len(jobs))
    if not workers:
        return
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    todo, done = context.Queue(), context.Queue()
    for index, job in enumerate(jobs):
        todo.put((index, job))
    for _ in range(workers):
        todo.put(None)
    procs = [context.Process(target=_worker, args=(target, todo, done, threads), name=f"worker-{w}", daemon=True)
             for w in range(workers)]
    finished = 0
    try:
        for proc in procs:
            proc.start()
        while finished < len(jobs):
            try:
                index, ok = done.get(timeout=poll_s)
            except queue.Empty:
                index = None
            if on_tick is not None:
                on_tick()
            if index is not None:
                if not ok:
                    raise RuntimeError(f"job {index} failed in a worker (its traceback is above); what it wrote "
                                       "is kept: rerun to continue")
                finished += 1
            elif (dead := next((p for p in procs if not p.is_alive() and p.exitcode != 0), None)) is not None:
                raise RuntimeError(f"{dead.name} exited with code {dead.exitcode} (its traceback is above); what "
                                   "it wrote is kept: rerun to continue")
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
            if proc.pid is not None:
                proc.join()
        todo.cancel_join_thread()  # jobs no worker took must not keep this process from exiting


def _worker(target: Callable[..., None], todo: Any, done: Any, threads: int) -> None:
    """A worker process: runs jobs from ``todo`` until its sentinel, reporting each to ``done``."""
    die_with_parent()
    import torch

    torch.set_num_threads(threads)
    while (item := todo.get()) is not None:
        index, job = item
        try:
            target(*job)
        except SystemExit as exit_:  # sys.exit(0) ends a job as it ended its process
            if exit_.code not in (0, None):
                done.put((index, False))
                raise
        except BaseException:
            traceback.print_exc()
            done.put((index, False))
            raise SystemExit(1)
        done.put((index, True))


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
