"""Dataset construction: band filter, prefixes, MC labels, resumability after a kill."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stoplib.engines.base import SamplingParams
from stoplib.engines.hf import HFEngine
from stoplib.labels import LabelConfig, build_labels, prefix_paths, rollout_seed, split_of
from stoplib.problems import Problem
from stoplib.train import load_label_records

CONFIG = LabelConfig(n_filter=4, band=(0, 4), prefix_lens=(3, 6), k_rollouts=3, batch_prefixes=4, val_fraction=0.3,
                     sampling=SamplingParams(temperature=1.0, max_new_tokens=16, seed=4, logprobs=0), model="tiny")


def job_inputs(engine: HFEngine) -> tuple[list[Problem], list[list[int]]]:
    problems = [Problem(id=f"q{i}", prompt=f"{i}+{i}", answer=str(2 * i), kind="toy", source="test") for i in range(6)]
    problems.append(Problem(id="held-out", prompt="9+9", answer="18", kind="toy", source="test"))
    return problems, [engine.tokenizer(p.prompt)["input_ids"] for p in problems]


class SlowEngine(HFEngine):
    """The HF engine, pausing after each call so that a kill lands between batches."""

    def generate(self, *args, **kwargs):
        out = super().generate(*args, **kwargs)
        time.sleep(0.3)
        return out


def run_job(model_dir: Path, out_dir: Path, marker: Path | None = None, config: LabelConfig = CONFIG,
            workers: int = 1) -> dict:
    engine = HFEngine(model_dir, batch_size=16)
    problems, prompts = job_inputs(engine)
    config = LabelConfig(**{**config.__dict__, "exclude_ids": ("held-out",)})
    if workers > 1:
        source = functools.partial(SlowEngine if marker else HFEngine, model_dir, batch_size=16)
        return build_labels(source, problems, prompts, config, out_dir, workers=workers, progress=False)

    def slow_down(n_done: int) -> None:
        if marker is not None:
            marker.write_text(str(n_done))
            time.sleep(0.5)  # give the parent time to kill us between batches

    return build_labels(engine, problems, prompts, config, out_dir, progress=False, on_batch=slow_down)


def logged(out_dir: Path) -> list[dict]:
    """The label records committed so far by every worker."""
    return [r for path in sorted((out_dir / "logs").glob("labels-*.jsonl")) for r in read(path)]


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_labels_follow_the_recipe(tiny_model_dir, tmp_path):
    card = run_job(tiny_model_dir, tmp_path / "a")
    labels = read(tmp_path / "a" / "labels.jsonl")
    filtered = read(tmp_path / "a" / "filter.jsonl")
    assert {r["problem_id"] for r in filtered} == {f"q{i}" for i in range(6)}  # decontamination
    for rec in labels:
        assert rec["Soft_label"] * CONFIG.k_rollouts == pytest.approx(round(rec["Soft_label"] * CONFIG.k_rollouts))
        assert rec["Hard_label"] in (0, 1) and rec["prefix_len"] in (3, 6)
        assert len(rec["prefix_token_ids"]) == rec["prompt_len"] + rec["prefix_len"]
        assert rec["split"] == split_of(rec["problem_id"], CONFIG.val_fraction, CONFIG.seed)
    # a path that ended before L gives no prefix at L
    lengths = {(r["problem_id"], p["sample_index"]): p["length"] for r in filtered for p in r["paths"]}
    assert all(lengths[(r["problem_id"], r["sample_index"])] > r["prefix_len"] for r in labels)
    expected = sum(1 for length in lengths.values() for L in (3, 6) if length > L)
    assert card["prefixes"] == len(labels) == expected
    train = load_label_records(tmp_path / "a" / "train.jsonl")  # readable by STOP training
    val_ids = {r["problem_id"] for r in read(tmp_path / "a" / "val.jsonl")}
    assert not val_ids & {r.problem_id for r in train}
    # rollouts are seeded per source path: identical prefix texts still get independent estimates
    seeds = {r["sample_index"]: r["rollout_seed"] for r in labels}
    assert len(set(seeds.values())) == len(seeds) > 1
    assert all(r["rollout_seed"] == rollout_seed(CONFIG.sampling.seed, r["sample_index"]) for r in labels)
    assert card["tokens_generated"]["rollouts"] == sum(r["rollout_tokens"] for r in labels) > 0
    # the same seed gives identical labels, in one process or sharded over two
    run_job(tiny_model_dir, tmp_path / "b")
    assert read(tmp_path / "b" / "labels.jsonl") == labels
    assert run_job(tiny_model_dir, tmp_path / "w2", workers=2)["tokens_generated"] == card["tokens_generated"]
    assert read(tmp_path / "w2" / "labels.jsonl") == labels
    assert read(tmp_path / "w2" / "filter.jsonl") == filtered
    assert len(list((tmp_path / "w2" / "logs").glob("labels-*.jsonl"))) == 2


def test_each_prefix_length_takes_the_paths_after_the_last_ones(tiny_model_dir, tmp_path):
    paths = list("abcde")
    assert prefix_paths(paths, None, 3) == paths  # no cap: every path at every length
    assert [prefix_paths(paths, 2, position) for position in range(4)] == [["a", "b"], ["c", "d"], ["e", "a"], ["b", "c"]]
    assert sorted(prefix_paths(paths, 8, 1)) == paths and prefix_paths([], 2, 1) == []
    # one prefix per length: a problem's two labelled prefixes come from two different paths
    run_job(tiny_model_dir, tmp_path / "one", config=LabelConfig(**{**CONFIG.__dict__, "max_prefixes_per_problem": 1}))
    labels, filtered = read(tmp_path / "one" / "labels.jsonl"), read(tmp_path / "one" / "filter.jsonl")
    for rec in filtered:
        mine = {r["prefix_len"]: r["sample_index"] for r in labels if r["problem_id"] == rec["problem_id"]}
        eligible = [[p["sample_index"] for p in rec["paths"] if p["length"] > L] for L in (3, 6)]
        assert [mine.get(L) for L in (3, 6)] == [prefix_paths(e, 1, position)[0] if e else None
                                                 for position, (e, L) in enumerate(zip(eligible, (3, 6)))]
    assert any(len(set(r["sample_index"] for r in labels if r["problem_id"] == f["problem_id"])) == 2 for f in filtered)


def test_band_filter_drops_problems(tiny_model_dir, tmp_path):
    config = LabelConfig(**{**CONFIG.__dict__, "band": (1, 4)})  # a random model solves nothing
    card = run_job(tiny_model_dir, tmp_path / "c", config=config)
    assert card["problems"] == 6 and card["problems_kept"] == 0 and card["prefixes"] == 0


def test_workers_must_come_from_a_factory(tiny_model_dir, tmp_path):
    engine = HFEngine(tiny_model_dir, batch_size=16)
    problems, prompts = job_inputs(engine)
    with pytest.raises(TypeError, match="factory"):
        build_labels(engine, problems, prompts, CONFIG, tmp_path, workers=2, progress=False)
    with pytest.raises(ValueError, match="workers"):
        build_labels(engine, problems, prompts, CONFIG, tmp_path, workers=0, progress=False)
    broken = functools.partial(HFEngine, tmp_path / "no-such-model", batch_size=16)
    with pytest.raises(RuntimeError, match=r"job \d failed in a worker"):
        build_labels(broken, problems, prompts, CONFIG, tmp_path / "broken", workers=2, progress=False)


@pytest.mark.parametrize("workers", [1, 2])
def test_killed_run_resumes_without_loss_or_duplicates(tiny_model_dir, tmp_path, workers):
    reference = run_job(tiny_model_dir, tmp_path / "ref")
    out, marker = tmp_path / "killed", tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "label_job.py"), str(tiny_model_dir), str(out),
                             str(marker), str(workers)], env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    deadline = time.time() + 120
    while not logged(out) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = logged(out)
    assert 0 < len(partial) < reference["prefixes"], "the kill must land mid-run"
    time.sleep(1.0)
    assert len(logged(out)) == len(partial), "workers must die with their parent"
    run_job(tiny_model_dir, out, workers=workers)
    keys = [(r["problem_id"], r["sample_index"], r["prefix_len"]) for r in read(out / "labels.jsonl")]
    assert len(keys) == len(set(keys)) == reference["prefixes"]
    ref = {(r["problem_id"], r["sample_index"], r["prefix_len"]): r for r in read(tmp_path / "ref" / "labels.jsonl")}
    assert all(ref[(r["problem_id"], r["sample_index"], r["prefix_len"])] == r for r in read(out / "labels.jsonl"))


LABEL_JOB = """
import sys
from stoplib import stages
from stoplib.config import resolve
config = resolve("tiny", results_root=sys.argv[1], workers=int(sys.argv[2]))
directory, card = stages.labels_stage(config, progress=False)
print(directory)
"""


@pytest.mark.slow
def test_two_processes_building_the_same_labels_neither_duplicate_nor_lose(tmp_path):
    """Two real processes (1 and 2 workers) start the same label run on one store: one builds, the
    other waits for it and finds it complete; the records equal a run alone."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    shared = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-c", LABEL_JOB, str(shared), str(w)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in (1, 2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    dirs = {out.strip().splitlines()[-1] for out, _ in outs}
    assert len(dirs) == 1
    shared_dir = Path(dirs.pop())
    alone = subprocess.run([sys.executable, "-c", LABEL_JOB, str(tmp_path / "alone"), "1"], env=env, text=True,
                           capture_output=True, check=True).stdout.strip().splitlines()[-1]
    for name in ("labels.jsonl", "train.jsonl", "val.jsonl", "filter.jsonl"):
        assert (shared_dir / name).read_bytes() == (Path(alone) / name).read_bytes(), name
    assert any("waiting for it to finish" in err for _, err in outs)  # the second one did wait
