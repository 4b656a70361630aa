"""STOP training killed with SIGKILL in a real process, at several moments, resumes to the same
checkpoint, byte for byte, as an uninterrupted run; nothing is left stuck or half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

JOB = Path(__file__).parent / "train_job.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "HF_HUB_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def start(model_dir: Path, out: Path, *pause: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(JOB), str(model_dir), str(out), *pause], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    return output


def committed_epoch(out: Path) -> int:
    try:
        return json.loads((out / "progress.json").read_text())["epoch"]
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()[0]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def checkpoint_bytes(out: Path) -> dict[str, bytes]:
    """Every file of the last and best checkpoints, and the history without timings."""
    files = {}
    for which in ("last", "best"):
        root = (out / which).resolve()
        files.update({f"{which}/{p.relative_to(root)}": p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})
    history = json.loads(((out / "last").resolve().parent / "history.json").read_text())
    files["history"] = json.dumps([{k: v for k, v in h.items() if k != "seconds"} for h in history]).encode()
    return files


@pytest.mark.slow
def test_sigkill_at_several_moments_resumes_to_the_same_checkpoint(tiny_model_dir, tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "killed"
    finish(start(tiny_model_dir, reference))
    want = checkpoint_bytes(reference)
    assert len(want) > 3
    landed = []

    # 1. right after the first epoch commits: mid-way through the next epoch (or its bookkeeping)
    proc = start(tiny_model_dir, out)
    wait_for(lambda: committed_epoch(out) >= 1, proc, "epoch 1 to commit")
    kill(proc)
    landed.append(("after epoch 1 committed", committed_epoch(out)))
    assert committed_epoch(out) < 4

    # 2.-4. inside the next commit: after the checkpoint is saved (before the training state),
    # after the epoch directory is renamed into place (before progress.json names it), and after
    # progress.json names it (before the links and the clean-up)
    for step in ("checkpoint", "renamed", "committed"):
        marker = tmp_path / f"paused-{step}"
        proc = start(tiny_model_dir, out, step, "1", str(marker))
        wait_for(marker.exists, proc, f"the commit step {step!r}")
        kill(proc)
        landed.append((step, committed_epoch(out)))

    print("kills landed at (moment, committed epoch):", landed)
    assert committed_epoch(out) < 4, landed  # the last kill left work to do
    output = finish(start(tiny_model_dir, out))
    assert "done: 4 epochs" in output
    assert checkpoint_bytes(out) == want, landed
    # nothing stuck or half-written: only committed epoch directories, and the links resolve
    assert {p.name for p in (out / "epochs").iterdir()} <= {f"{e:04d}" for e in range(1, 5)}
    assert not list(out.rglob("*.tmp"))
    assert (out / "last").resolve().is_dir() and (out / "best").resolve().is_dir()
