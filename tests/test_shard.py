"""Sharding the label and bank stages by problem: n shards merged == one process, byte for byte."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from stoplib import stages
from stoplib.config import resolve


def files(directory: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in names}


def card_without_time(directory: Path) -> dict:
    card = json.loads((directory / "card.json").read_text())
    card.pop("seconds")
    return card


@pytest.mark.parametrize("text, expected", [("0/1", (0, 1)), ("1/2", (1, 2)), (" 3 / 4 ", (3, 4))])
def test_shard_specs_parse(text, expected):
    assert stages.parse_shard(text) == expected


@pytest.mark.parametrize("text", ["3/2", "2/2", "0/0", "a/b", "-1/2", "1", "1/2/3", "", "1.0/2"])
def test_bad_shard_specs_name_the_value(text):
    with pytest.raises(ValueError, match=f"shard {text!r}"):
        stages.parse_shard(text)


def test_shards_take_every_nth_problem_by_position():
    assert stages.shard_positions(7, (0, 3)) == [0, 3, 6] and stages.shard_positions(7, (2, 3)) == [2, 5]
    assert sorted(p for i in range(3) for p in stages.shard_positions(7, (i, 3))) == list(range(7))
    assert stages.shard_positions(4, None) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"shard \(2, 2\)"):
        stages.shard_positions(4, (2, 2))


def test_two_label_shards_merge_to_one_run(tmp_path):
    one = resolve("tiny", "toy", results_root=str(tmp_path / "one"))
    sharded = resolve("tiny", "toy", results_root=str(tmp_path / "sharded"))
    alone, _ = stages.labels_stage(one, progress=False)
    parts = [stages.labels_stage(sharded, progress=False, shard=(i, 2))[0] for i in range(2)]
    assert len({alone.name, *(p.name for p in parts)}) == 3  # each shard is a store entry of its own
    counts = [json.loads((p / "card.json").read_text())["problems"] for p in parts]
    assert counts == [6, 6] and json.loads((parts[1] / "card.json").read_text())["shard"] == [1, 2]
    merged, card = stages.merge_labels(sharded, 2)
    assert merged.name == alone.name  # the unsharded run's key: later stages find it
    names = ["filter.jsonl", "labels.jsonl", "train.jsonl", "val.jsonl"]
    assert files(merged, names) == files(alone, names)
    assert card_without_time(merged) == card_without_time(alone)
    assert card["complete"] and card["prefixes"] > 0
    assert stages.labels_stage(sharded, progress=False)[0] == merged  # the merged entry is the finished run


def test_two_bank_shards_merge_to_one_bank(tmp_path):
    one = resolve("tiny", "toy", results_root=str(tmp_path / "one"))
    sharded = resolve("tiny", "toy", results_root=str(tmp_path / "sharded"))
    alone = stages.bank_stage(one, progress=False)
    halves = [stages.bank_stage(sharded, progress=False, shard=(i, 2)) for i in range(2)]
    assert [len(h.problems) for h in halves] == [4, 4]
    assert [bp.problem.id for bp in halves[1].problems] == [bp.problem.id for bp in alone.problems[1::2]]
    merged = stages.merge_bank(sharded, 2)
    one_dir = stages.Store(one.results_root).run_dir("bank", stages.bank_key(one))
    merged_dir = stages.Store(sharded.results_root).run_dir("bank", stages.bank_key(sharded))
    names = sorted(p.name for p in one_dir.iterdir() if p.name not in (".lock", "config.json"))
    assert names == sorted(p.name for p in merged_dir.iterdir() if p.name not in (".lock", "config.json"))
    assert "index.jsonl" in names and "complete.json" in names and len(names) == 2 + len(alone.problems)
    assert files(merged_dir, names) == files(one_dir, names)
    assert (merged.correct_matrix() == alone.correct_matrix()).all()


def test_merging_missing_shards_names_them(tmp_path):
    config = resolve("tiny", "toy", results_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"shard\(s\) 0/3, 1/3, 2/3 of 3 are not complete"):
        stages.merge_bank(config, 3)
    with pytest.raises(ValueError, match="shards"):
        stages.merge_labels(config, 0)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stoplib.cli", *args], capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": ""})


@pytest.mark.slow
def test_cli_shards_and_merges_the_bank(tmp_path):
    root = str(tmp_path / "results")
    for i in range(2):
        done = cli("bank", "--scale", "tiny", "--results-root", root, "--shard", f"{i}/2", "--quiet")
        assert done.returncode == 0, done.stderr[-2000:]
        assert json.loads(done.stdout)["problems"] == 4
    merged = cli("merge", "bank", "--shards", "2", "--scale", "tiny", "--results-root", root)
    assert merged.returncode == 0, merged.stderr[-2000:]
    assert json.loads(merged.stdout) == {"problems": 8, "paths": 8}
    bad = cli("label", "--scale", "tiny", "--results-root", root, "--shard", "3/2")
    assert bad.returncode == 2 and "shard '3/2'" in bad.stderr and "Traceback" not in bad.stderr
