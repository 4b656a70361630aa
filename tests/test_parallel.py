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


def group_sum(path: Path) -> None:
    """Each process of the group adds its rank; process 0 writes the sum and the group size."""
    import torch
    import torch.distributed as dist

    from stoplib.distributed import init_distributed

    rank, world = init_distributed()
    total = torch.tensor([float(rank)])
    dist.all_reduce(total)
    if rank == 0:
        path.write_text(f"{int(total.item())} {world}")


def fail_on_rank(rank: int) -> None:
    if int(os.environ["RANK"]) == rank:
        sys.exit(4)


def test_a_process_group_runs_one_job_on_every_process(tmp_path):
    from stoplib.parallel import run_process_group

    run_process_group(group_sum, (tmp_path / "sum",), world=2)
    assert (tmp_path / "sum").read_text() == "1 2"  # 0 + 1, two processes
    with pytest.raises(RuntimeError, match="process rank-1 of the data parallel group exited with code 4"):
        run_process_group(fail_on_rank, (1,), world=2)
    with pytest.raises(ValueError, match="world"):
        run_process_group(fail_on_rank, (0,), world=0)


@pytest.mark.slow
def test_the_verifier_trains_data_parallel_as_in_one_process(tmp_path):
    """train_parallel trains the verifier over 2 processes into the same store entry as one
    process, with the same bits."""
    from safetensors.torch import load_file

    one = resolve("tiny", results_root=str(tmp_path / "one"), workers=1)
    two = resolve("tiny", results_root=str(tmp_path / "two"), workers=2)
    assert stages.train_parallel([(one, "verifier")]) == [(one, "verifier")]
    assert stages.train_parallel([(two, "verifier"), (two, "stop_probe")]) == [(two, "verifier"), (two, "stop_probe")]
    best_one, summary_one = stages.verifier_stage(one, progress=False)
    best_two, summary_two = stages.verifier_stage(two, progress=False)
    assert best_one.relative_to(tmp_path / "one") == best_two.relative_to(tmp_path / "two")  # one store key
    assert [{k: v for k, v in row.items() if k != "seconds"} for row in summary_one["history"]] == \
        [{k: v for k, v in row.items() if k != "seconds"} for row in summary_two["history"]]
    assert summary_one["best_epoch"] == summary_two["best_epoch"]
    for file in ("verifier_head.safetensors", "adapter/adapter_model.safetensors"):
        assert load_file(str(best_one / file)).keys() == load_file(str(best_two / file)).keys()
        assert all(a.equal(b) for a, b in zip(load_file(str(best_one / file)).values(),
                                              load_file(str(best_two / file)).values())), file
