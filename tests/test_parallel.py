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


def test_jobs_run_in_their_own_processes(tmp_path):
    run_in_processes(write_pid, [(tmp_path / f"{i}.pid",) for i in range(3)], workers=2)
    pids = {int((tmp_path / f"{i}.pid").read_text()) for i in range(3)}
    assert len(pids) == 3 and os.getpid() not in pids


def test_a_failed_job_raises_and_names_itself():
    with pytest.raises(RuntimeError, match="worker job-1 exited with code 3"):
        run_in_processes(fail, [(0,), (3,)], workers=2)
    with pytest.raises(ValueError, match="workers"):
        run_in_processes(fail, [(0,)], workers=0)


def test_train_parallel_trains_each_job_once(tmp_path):
    config = resolve("tiny", results_root=str(tmp_path / "results"), workers=2)
    jobs = [(config, "probe"), (config, "hard")]
    assert not any(stages.is_trained(c, what) for c, what in jobs)
    assert stages.train_parallel(jobs) == jobs
    assert all(stages.is_trained(c, what) for c, what in jobs)
    assert stages.train_parallel(jobs) == []  # cached: nothing runs again
    with pytest.raises(ValueError, match="unknown training"):
        stages.train_parallel([(config, "nonsense")])
