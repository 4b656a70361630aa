"""A non-editable install (the wheel) carries what a user needs: the organism's weights and the
benchmark files, found through the package, not through this checkout."""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK = """
import stoplib, sys
assert stoplib.__file__.startswith(sys.argv[1]), stoplib.__file__   # the wheel, not the checkout
from stoplib import stages
from stoplib.config import resolve
from stoplib.problems import load_problems
assert len(load_problems("aime_2024")) == 30
config = resolve("tiny", model="toy", results_root="results")
engine = stages.engine_for(config)
problems = stages.eval_problems(config)[:2]
paths = engine.generate(stages.prompts_for(problems, engine.tokenizer, config), 2, config.sampling)
print(sum(p.generated_tokens for group in paths for p in group))
"""


@pytest.mark.slow
def test_wheel_runs_the_organism_and_finds_the_benchmarks(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), ROOT], check=True)
    (wheel,) = glob.glob(str(wheels / "stoplib-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), wheel],
                   check=True)
    run = tmp_path / "elsewhere"
    run.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("STOPLIB_ROOT", None)
    out = subprocess.run([sys.executable, "-c", CHECK, str(target)], cwd=run, env=env, check=True,
                         capture_output=True, text=True)
    assert int(out.stdout.strip().splitlines()[-1]) > 0
