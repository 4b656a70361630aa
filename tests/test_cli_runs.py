"""`stoplib toy` and `stoplib reproduce` run as a user runs them: the installed CLI in a process of
its own, writing into a temporary results root."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stoplib import stages
from stoplib.config import resolve
from stoplib.models import check_model_dir, model_identity
from stoplib.store import Store, load_metrics


def stoplib(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("STOPLIB_ROOT", None)
    done = subprocess.run([sys.executable, "-m", "stoplib.cli", *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_toy_builds_the_same_tiny_organism_into_the_store_and_into_a_directory(tmp_path):
    results, out = tmp_path / "results", tmp_path / "elsewhere" / "organism"
    in_store = Path(stoplib("toy", "--scale", "tiny", "--results-root", str(results), "--quiet").stdout.strip())
    assert in_store == results / "organism" / "tiny"
    assert Path(stoplib("toy", "--scale", "tiny", "--out", str(out), "--quiet").stdout.strip()) == out
    for model in (in_store, out):
        check_model_dir(model)
        names = {p.name for p in model.iterdir()}
        assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "build_info.json"} <= names
        assert [p.name for p in model.parent.iterdir()] == [model.name]  # no staging directory left behind
        config = json.loads((model / "config.json").read_text())
        assert (config["model_type"], config["hidden_size"], config["intermediate_size"],
                config["num_hidden_layers"], config["num_attention_heads"]) == ("llama", 32, 64, 2, 2)
        info = json.loads((model / "build_info.json").read_text())
        assert (info["steps"], info["seed"], info["threads"]) == (30, 0, 1)
    # two processes, same seed: the same weights, so one store key
    assert (in_store / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()
    assert model_identity(in_store) == model_identity(out)


@pytest.mark.slow
def test_reproduce_runs_notebook_00_and_records_its_metrics(tmp_path):
    results, figures = tmp_path / "results", tmp_path / "figures"
    stoplib("reproduce", "--scale", "tiny", "--only", "00", "--results-root", str(results),
            "--figures-dir", str(figures))
    assert sorted(p.name for p in (results / "latest" / "toy").iterdir()) == ["00_reasoning_model.json",
                                                                            "reproduce.json"]
    record = json.loads((results / "latest" / "toy" / "00_reasoning_model.json").read_text())
    assert (record["notebook"], record["run"]) == ("00_reasoning_model", "toy") and record["provenance"]
    metrics = load_metrics("00_reasoning_model", results, "toy")
    config = resolve("tiny", results_root=str(results))
    assert (metrics["n_paths"], metrics["prefix_len"], metrics["n_problems"]) == \
        (config.n_paths, config.prefix_len, config.n_eval_problems)
    # the numbers are those of the bank the notebook left in the store
    assert Store(results).exists("bank", stages.bank_key(config), "complete.json")
    bank = stages.bank_stage(config, progress=False)
    assert metrics["pass_at_1"] == pytest.approx(bank.correct_matrix().mean())
    assert metrics["mean_tokens"] == pytest.approx(bank.lengths().mean())
    assert metrics["prefix_fraction"] == pytest.approx(config.prefix_len / bank.lengths().mean())
    times = load_metrics("reproduce", results, "toy")
    assert times["scale"] == "tiny" and list(times["minutes"]) == ["00_reasoning_model"]
    drawn = sorted(p.name for p in (figures / "toy").glob("*.png"))
    assert drawn and all(name.startswith("00_") for name in drawn)
    assert (results / "notebooks" / "toy" / "00_reasoning_model.ipynb").is_file()
