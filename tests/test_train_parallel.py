"""STOP training data parallel over 2 CPU processes (gloo) equals one process within float tolerance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stoplib.train import DEFAULT_CACHE_BYTES, LabelRecord, TrainConfig, train_stop
from tests.test_train import make_scorer, synthetic

# 97 records in batches of 16: the last batch has one row, so one process has none of it.
CONFIG = TrainConfig(lr=1e-2, epochs=3, batch_size=16, grad_accum=2, warmup_steps=2, seed=5)
RUNS = {"cached": DEFAULT_CACHE_BYTES, "plain": 0}  # on cached prefix states / re-encoding every step
# The text verifier: LoRA (with dropout) on every position, so each process must lay out its rows as
# the whole batch is (padded width, a shared beginning encoded once) to draw one process's masks.
# In 2 parts per batch (train_stop(parts=2)) one process and two give the same bits.
VERIFIER_RUNS = ("verifier", "verifier_shared")
PARTS = 2
VERIFIER_CONFIG = TrainConfig(lr=1e-2, epochs=3, batch_size=16, grad_accum=1, warmup_steps=2, seed=5)
SHARED = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # a beginning every record shares (like a system turn)
TOLERANCE = 1e-4
REPO = Path(__file__).resolve().parent.parent


def records():
    return synthetic(97, 21), synthetic(30, 22)


def verifier_records(name: str):
    """The records of a verifier run: as they are, or each behind the shared beginning."""
    if name == "verifier":
        return records()
    return tuple([LabelRecord(tuple(SHARED) + r.prefix_token_ids, r.soft_label, r.hard_label, r.problem_id)
                  for r in part] for part in records())


def make_verifier(model_dir):
    from stoplib.engines.hf import load_model_and_tokenizer
    from stoplib.signals.verifier import TextVerifier, VerifierConfig

    model, tok = load_model_and_tokenizer(model_dir)
    torch.manual_seed(0)
    return TextVerifier(model, tok, VerifierConfig(lora_r=4, lora_alpha=8, lora_dropout=0.1))


def launch(*command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run([sys.executable, "-m", *command], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def assert_same_history(one: list[dict], two: list[dict]) -> None:
    assert len(one) == len(two)
    for a, b in zip(one, two):
        assert set(a) == set(b)
        for key in a:
            if key != "seconds":
                assert b[key] == pytest.approx(a[key], rel=TOLERANCE, abs=1e-7), (key, a, b)


def assert_same_checkpoint(one: Path, two: Path) -> None:
    for name in ("stop_head.safetensors", "adapter/adapter_model.safetensors"):
        a, b = load_file(str(one / name)), load_file(str(two / name))
        assert set(a) == set(b)
        for key in a:
            assert (a[key] - b[key]).abs().max() <= TOLERANCE * max(1.0, a[key].abs().max()), (name, key)


@pytest.mark.slow
def test_two_processes_train_as_one(tiny_model_dir, tmp_path):
    launch("torch.distributed.run", "--standalone", "--nproc-per-node", "2", "tests/ddp_job.py",
           str(tiny_model_dir), str(tmp_path / "two"))
    train_records, val_records = records()
    for name, cache_bytes in RUNS.items():
        one = train_stop(make_scorer(tiny_model_dir), train_records, val_records, CONFIG, tmp_path / "one" / name,
                         progress=False, cache_bytes=cache_bytes)
        two = json.loads((tmp_path / "two" / f"{name}.json").read_text())
        assert_same_history(one.history, two)
        progress = json.loads((tmp_path / "two" / name / "progress.json").read_text())
        assert progress["epoch"] == CONFIG.epochs and progress["best_epoch"] == one.best_epoch
        assert_same_checkpoint(one.best_dir, tmp_path / "two" / name / "best")
        print(name, "final train loss: 1 process", one.history[-1]["train_loss"], "2 processes",
              two[-1]["train_loss"])
    for name in VERIFIER_RUNS:  # in 2 parts: the same bits in one process and in two
        train_records, val_records = verifier_records(name)
        one = train_stop(make_verifier(tiny_model_dir), train_records, val_records, VERIFIER_CONFIG,
                         tmp_path / "one" / name, progress=False, parts=PARTS)
        two = json.loads((tmp_path / "two" / f"{name}.json").read_text())
        assert [{k: v for k, v in row.items() if k != "seconds"} for row in one.history] == \
            [{k: v for k, v in row.items() if k != "seconds"} for row in two]
        for file in ("verifier_head.safetensors", "adapter/adapter_model.safetensors"):
            a, b = load_file(str(one.best_dir / file)), load_file(str(tmp_path / "two" / name / "best" / file))
            assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), file
        print(name, "final train loss: 1 process", one.history[-1]["train_loss"], "2 processes",
              two[-1]["train_loss"])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_stoplib_train_under_accelerate_launch_equals_one_process(tmp_path):
    """`accelerate launch` (torchrun's environment: on CPU its --multi_gpu launcher; --cpu alone
    starts one process) runs `stoplib train` on 2 gloo processes; the stage's summary and best
    checkpoint equal one process's."""
    from stoplib import stages
    from stoplib.config import resolve

    best, summary = stages.stop_stage(resolve("tiny", "toy", results_root=str(tmp_path / "one")), progress=False)
    done = launch("accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                  "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
                  "-m", "stoplib.cli", "train", "--scale", "tiny", "--results-root", str(tmp_path / "two"), "--quiet")
    report = json.loads(done.stdout[done.stdout.index("{"):])  # one report, from process 0
    two = Path(report["checkpoint"])
    assert two.is_relative_to(tmp_path / "two") and two.parent.name == best.parent.name  # the same store key
    assert_same_history(summary["history"], json.loads((two.parent / "summary.json").read_text())["history"])
    assert report["best_epoch"] == summary["best_epoch"]
    assert_same_checkpoint(best, two)
    print("final train loss: 1 process", summary["history"][-1]["train_loss"], "2 processes",
          json.loads((two.parent / "summary.json").read_text())["history"][-1]["train_loss"])
