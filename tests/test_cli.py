"""The headless CLI uses the same stages and store as the notebooks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stoplib.config import resolve
from stoplib.presets import PRESETS


def run(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "stoplib.cli", *args], check=True, capture_output=True,
                          text=True, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": ""}).stdout


@pytest.mark.slow
def test_label_then_train_at_tiny_scale(tmp_path):
    root = str(tmp_path / "results")
    out = json.loads(run("label", "--scale", "tiny", "--results-root", root, "--workers", "2", "--quiet"))
    assert out["prefixes"] > 0 and out["problems"] == resolve("tiny").n_train_problems
    assert len(list(Path(out["directory"]).glob("logs/labels-*.jsonl"))) == 2  # sharded over 2 processes
    again = json.loads(run("label", "--scale", "tiny", "--results-root", root, "--quiet"))
    assert again == out  # cached: the same store entry, nothing recomputed
    trained = json.loads(run("train", "--scale", "tiny", "--results-root", root, "--variant", "stop_probe", "--quiet"))
    checkpoint = Path(trained["checkpoint"])
    assert checkpoint.is_relative_to(tmp_path) and (checkpoint / "stop_config.json").exists()


def test_paper_presets_for_the_papers_models():
    gpt = resolve("paper", model="openai/gpt-oss-20b")
    assert gpt.sampling.max_new_tokens == 32768 and gpt.chat_kwargs == {"reasoning_effort": "medium"}
    small = resolve("paper", model="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    assert small.sampling.max_new_tokens == 16384 and small.stop.lora_r == 128 and small.stop.lora_alpha == 256
    assert (small.n_paths, small.keep, small.prefix_len) == (64, 8, 2048)
    assert (small.sampling.temperature, small.sampling.top_p, small.sampling.top_k) == (0.6, 0.95, 40)
    assert set(PRESETS) >= {"deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "deepseek-ai/DeepSeek-R1-0528-Qwen3-8B"}
    tiny = resolve("tiny", model="deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")  # small scales are small for real models
    assert tiny.prefix_len < 2048 and tiny.sampling.max_new_tokens < 16384 and tiny.n_eval_problems > 0


def test_toy_builds_into_the_store_and_leaves_the_shipped_weights(tmp_path):
    from stoplib.cli import main
    from stoplib.toy.organism import WEIGHTS_DIR

    shipped = (WEIGHTS_DIR / "small" / "model.safetensors").read_bytes()
    main(["toy", "--scale", "tiny", "--results-root", str(tmp_path), "--quiet"])
    assert (tmp_path / "organism" / "tiny" / "config.json").is_file()
    assert (WEIGHTS_DIR / "small" / "model.safetensors").read_bytes() == shipped
    with pytest.raises(SystemExit, match="replace-shipped"):
        main(["toy", "--scale", "tiny", "--replace-shipped"])


def test_force_clears_a_trained_run_with_its_checkpoint_links(tmp_path):
    """`--force` empties a run directory whose best/last are symbolic links to epoch directories."""
    from stoplib.stages import _fresh

    run = tmp_path / "run"
    (run / "epochs" / "0001" / "checkpoint").mkdir(parents=True)
    (run / "best").symlink_to("epochs/0001/checkpoint")
    (run / "config.json").write_text("{}")
    _fresh(run, True)
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_train_takes_the_variant_names_of_the_stages(capsys):
    """`stoplib train --variant` offers exactly stages.VARIANTS; any other name is refused with the list."""
    from stoplib.cli import main
    from stoplib.stages import VARIANTS

    for name in ("probe", "hard", "bogus"):
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--variant", name])
        assert exit_info.value.code == 2
        choices = ", ".join(repr(v) for v in VARIANTS)
        assert f"invalid choice: {name!r} (choose from {choices})" in capsys.readouterr().err
