"""Jobs in worker processes: failures surface, and trainings run side by side into the store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stoplib import stages
from stoplib.config import resolve
from stoplib.parallel import run_in_processes


def write_pid(path: Path) -> None:
    path.write_text(str(os.getpid()))


def fail(code: int) -> None:
    sys.exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), 9)  # dies without a word: the parent sees the exit code


def test_jobs_run_in_worker_processes(tmp_path):
    run_in_processes(write_pid, [(tmp_path / f"{i}.pid",) for i in range(5)], workers=2)
    pids = {int((tmp_path / f"{i}.pid").read_text()) for i in range(5)}
    assert len(pids) <= 2 and os.getpid() not in pids  # at most two workers, each taking job after job
    run_in_processes(write_pid, [(tmp_path / "one.pid",)], workers=4)  # no more workers than jobs
    assert int((tmp_path / "one.pid").read_text()) != os.getpid()


def test_a_failed_job_raises_and_names_itself():
    with pytest.raises(RuntimeError, match="job 1 failed in a worker"):
        run_in_processes(fail, [(0,), (3,)], workers=2)
    with pytest.raises(RuntimeError, match="worker-0 exited with code -9"):
        run_in_processes(kill_self, [()], workers=1)
    with pytest.raises(ValueError, match="workers"):
        run_in_processes(fail, [(0,)], workers=0)


def test_train_parallel_trains_each_job_once(tmp_path):
    config = resolve("tiny", results_root=str(tmp_path / "results"), workers=2)
    jobs = [(config, "stop_probe"), (config, "stop_hard")]
    assert not any(stages.is_trained(c, what) for c, what in jobs)
    assert stages.train_parallel(jobs) == jobs
    assert all(stages.is_trained(c, what) for c, what in jobs)
    assert stages.train_parallel(jobs) == []  # cached: nothing runs again
    with pytest.raises(ValueError, match="unknown training"):
        stages.train_parallel([(config, "nonsense")])


def test_a_failure_with_jobs_left_in_the_queue_still_ends_the_process():
    """Jobs no worker took (more than a pipe holds) must not keep the parent from exiting."""
    import subprocess

    code = ("from stoplib.parallel import run_in_processes\n"
            "from tests.test_parallel import fail\n"
            "if __name__ == '__main__':\n"
            "    run_in_processes(fail, [(3,)] + [('x' * 100_000,)] * 8, workers=1)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "job 0 failed in a worker" in done.stderr, done.stderr[-2000:]
