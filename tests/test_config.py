"""resolve(): presets, overrides reaching every stage, validation; stage cache keys by content."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stoplib import stages
from stoplib.config import resolve, with_label_lengths
from stoplib.problems import save_problems
from stoplib.store import config_hash
from stoplib.tasks import arithmetic


def test_overrides_reach_every_stage_config():
    config = resolve("tiny", prefix_len=20, max_new_tokens=150, k_rollouts=3, n_filter=6, epochs=3, lr=2e-3,
                     lora_r=4, n_paths=6, keep=3)
    assert config.prefix_len == 20 and config.labels.prefix_lens == (20,)
    assert config.sampling.max_new_tokens == config.labels.sampling.max_new_tokens == 150
    assert (config.labels.k_rollouts, config.labels.n_filter, config.labels.band) == (3, 6, (1, 5))
    assert (config.train.epochs, config.train.lr, config.stop.lora_r, config.stop.lora_alpha) == (3, 2e-3, 4, 8)
    assert (config.n_paths, config.keep) == (6, 3)


@pytest.mark.parametrize("overrides, message", [
    ({"keep": 9}, "keep=9 must be <= n_paths=8"),
    ({"prefix_len": 200}, "prefix_len=200 must be below max_new_tokens=200"),
    ({"n_paths": 0}, "parameter n_paths=0: expected an integer >= 1"),
    ({"epochs": 1.5}, "parameter epochs=1.5: expected an integer >= 1"),
    ({"lr": 0}, "parameter lr=0: expected a number strictly between 0 and 1"),
    ({"lr": float("nan")}, "parameter lr=nan"),
    ({"workers": 0}, "parameter workers=0: expected an integer >= 1"),
    ({"prefix_lenght": 3}, "unknown config fields \\['prefix_lenght'\\]"),
    ({"prefixes_per_problem": 0}, "parameter prefixes_per_problem=0: expected None or an integer >= 1"),
    ({"verifier_epochs": "2"}, "parameter verifier_epochs='2'"),
    ({"n_eval_problems": -1}, "parameter n_eval_problems=-1: expected an integer >= 0"),
    ({"threads": 0}, "parameter threads=0: expected None or an integer >= 1"),
    ({"benchmark": 5}, "parameter benchmark=5: expected a non-empty string"),
    ({"train_problems": ["toy"]}, "parameter train_problems=\\['toy'\\]"),
    ({"sampling": {"temperature": 1.0}}, "parameter sampling=.*expected a SamplingParams, got dict"),
    ({"max_new_tokens": 30}, "prefix_len=36 must be below max_new_tokens=30"),
    ({"prefix_len": 600, "max_new_tokens": 700}, r"prefix_len=600 must be below the maximum context of model 'toy' \(512"),
])
def test_bad_values_name_the_parameter(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve("tiny", **overrides)


def test_bad_scale_engine_seed():
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        resolve("huge")
    with pytest.raises(ValueError, match="unknown engine 'sglang'"):
        resolve("tiny", engine="sglang")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        resolve("tiny", seed=-1)


def test_engine_and_prompt_change_the_keys_paths_do_not(tmp_path):
    hf, vllm = resolve("tiny", engine="hf"), resolve("tiny", engine="vllm")
    assert config_hash(stages.labels_key(hf)) != config_hash(stages.labels_key(vllm))
    assert config_hash(stages.bank_key(hf)) != config_hash(stages.bank_key(vllm))
    # the same organism copied elsewhere: the same keys (content, not path)
    copy = tmp_path / "organism"
    shutil.copytree(hf.model_path, copy)
    moved = resolve("tiny", model=str(copy), benchmark="toy", train_problems="toy", n_train_problems=12,
                    n_eval_problems=8, prefix_len=36, max_new_tokens=200, batch_size=512, n_filter=8,
                    k_rollouts=4, prefixes_per_problem=None, n_paths=8, keep=2)
    assert stages.bank_key(moved)["model"] == stages.bank_key(hf)["model"]
    assert stages.bank_key(moved)["inputs"] == stages.bank_key(hf)["inputs"]
    # a different prompt (few-shot examples) changes the inputs' hash
    few = resolve("tiny", prompt=hf.prompt.__class__(few_shot=(("q", "a"),)))
    assert stages.bank_key(few)["inputs"] != stages.bank_key(hf)["inputs"]


def test_labels_at_several_lengths_label_each_length_as_the_run_labels_one():
    run = resolve("small", model="toy")  # 8 prefixes per kept problem, at L = 36
    several = with_label_lengths(run, [72, 18, 36, 54, 36])
    assert several.labels.prefix_lens == (18, 36, 54, 72)
    assert several.labels.max_prefixes_per_problem == 8  # the run's number at every length
    assert with_label_lengths(run, [18, 36, 54, 72], spread=True).labels.max_prefixes_per_problem == 8 // 4
    assert with_label_lengths(run, range(10, 110, 10), spread=True).labels.max_prefixes_per_problem == 1  # one each
    assert with_label_lengths(resolve("tiny"), [18, 36], spread=True).labels.max_prefixes_per_problem is None
    assert several.prefix_len == run.prefix_len and several.train == run.train  # only the labels change
    assert config_hash(stages.labels_key(several)) != config_hash(stages.labels_key(run))  # a store entry of its own
    assert config_hash(stages.bank_key(several)) == config_hash(stages.bank_key(run))  # the same bank is scored
    for bad in ([], "36", [0, 36], [True], [36.5], None):
        with pytest.raises(ValueError, match="lengths"):
            with_label_lengths(run, bad)
    with pytest.raises(ValueError, match="max_new_tokens"):
        with_label_lengths(run, [36, run.labels.sampling.max_new_tokens])


def test_editing_a_problems_file_changes_the_labels_key(tmp_path):
    path = tmp_path / "problems.jsonl"
    problems = arithmetic.make_problems(6, split="train")
    save_problems(problems, path)
    config = resolve("tiny", train_problems=str(path))
    before = config_hash(stages.labels_key(config))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["answer"] = "999"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert config_hash(stages.labels_key(config)) != before


def test_labels_from_a_file_do_not_need_the_evaluation_benchmark(tmp_path, monkeypatch):
    """Decontamination reads the evaluation problems only when both come from one source."""
    from stoplib import stage_labels, stages
    from stoplib.problems import save_problems
    from stoplib.toy.task import make_problems

    problems_file = save_problems(make_problems(3, seed=5, split="train"), tmp_path / "train.jsonl")
    config = resolve("tiny", train_problems=str(problems_file), benchmark=str(tmp_path / "missing.json"),
                     results_root=str(tmp_path / "results"))

    def no_benchmark(_config):
        raise AssertionError("the evaluation benchmark was loaded")

    monkeypatch.setattr(stage_labels, "eval_problems", no_benchmark)
    monkeypatch.setattr(stage_labels, "check_dataset", lambda card, config: None)  # 3 problems may all be filtered out
    _, card = stages.labels_stage(config, progress=False)
    assert card["problems"] == 3


def test_notebooks_opened_in_jupyterlab_use_the_repository_store(monkeypatch, tmp_path):
    """A kernel started in notebooks/ (JupyterLab's default) resolves results/ and figures/ at the
    repository root, with or without make lab's STOPLIB_ROOT; elsewhere paths stay relative."""
    from stoplib.config import project_path, repo_root

    monkeypatch.delenv("STOPLIB_ROOT", raising=False)
    monkeypatch.chdir(repo_root() / "notebooks")
    assert project_path("results") == str(repo_root() / "results")
    assert project_path("/abs/results") == "/abs/results"
    monkeypatch.chdir(tmp_path)
    assert project_path("results") == "results"
    monkeypatch.setenv("STOPLIB_ROOT", str(tmp_path / "repo"))
    assert project_path("figures") == str(tmp_path / "repo" / "figures")


def test_the_notebooks_kernel_is_installed():
    """make install registers the "stoplib" kernel that every notebook names."""
    import json
    import sys

    from stoplib.config import repo_root

    spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "stoplib" / "kernel.json"
    if not spec.exists():
        pytest.skip("not run from the make-installed .venv")
    assert json.loads(spec.read_text())["display_name"] == "Python (stoplib)"
    for nb in sorted((repo_root() / "notebooks").glob("*.ipynb")):
        assert json.loads(nb.read_text())["metadata"]["kernelspec"]["name"] == "stoplib", nb.name
