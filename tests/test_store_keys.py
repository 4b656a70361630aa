"""Store keys: the engine separates the entries it changes (bank, labels, what is trained on the
labels); the model is keyed by the content of its files, never by where they lie."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest

from stoplib import stages
from stoplib.config import resolve
from stoplib.store import Store, config_hash


class NoEngine:
    """Passed as the engine of a stage that should find its result in the store: any use fails."""

    def __getattr__(self, name):
        raise AssertionError(f"the stage needed an engine (engine.{name}): the store entry was not found")


def at(config, model_dir):
    """``config`` with the model's files read from ``model_dir``."""
    return replace(config, model_path=str(model_dir), stop=replace(config.stop, base_model=str(model_dir)))


@pytest.fixture
def two_copies(tmp_path):
    """Two copies of the shipped organism in different directories."""
    source = resolve("tiny").model_path
    return shutil.copytree(source, tmp_path / "here"), shutil.copytree(source, tmp_path / "there" / "organism")


def test_hf_and_vllm_get_their_own_bank_and_labels_directories(tmp_path):
    root = str(tmp_path)
    hf, vllm = resolve("tiny", engine="hf", results_root=root), resolve("tiny", engine="vllm", results_root=root)
    store = Store(root)
    for step, key in (("bank", stages.bank_key), ("labels", stages.labels_key)):
        assert (key(hf)["engine"], key(vllm)["engine"]) == ("hf", "vllm")
        assert store.run_dir(step, key(hf)) != store.run_dir(step, key(vllm)), step
    assert {**stages.bank_key(hf), "engine": "vllm"} == stages.bank_key(vllm)  # the engine is the only difference


def test_a_bank_and_labels_built_with_hf_are_not_found_for_vllm(tmp_path):
    root = str(tmp_path)
    hf, vllm = resolve("tiny", engine="hf", results_root=root), resolve("tiny", engine="vllm", results_root=root)
    stages.bank_stage(hf, progress=False)
    stages.stop_stage(hf, "stop_probe", progress=False)  # builds the labels first
    stages.bank_stage(hf, engine=NoEngine(), progress=False)  # found again under its own key
    stages.labels_stage(hf, engine=NoEngine(), progress=False)
    with pytest.raises(AssertionError, match="needed an engine"):
        stages.bank_stage(vllm, engine=NoEngine(), progress=False)
    with pytest.raises(AssertionError, match="needed an engine"):
        stages.labels_stage(vllm, engine=NoEngine(), progress=False)
    assert stages.is_trained(hf, "stop_probe") and not stages.is_trained(vllm, "stop_probe")


def test_a_copy_of_the_model_elsewhere_finds_every_stored_result(two_copies, tmp_path):
    here, there = two_copies
    config = resolve("tiny", results_root=str(tmp_path / "results"))
    stages.bank_stage(at(config, here), progress=False)
    stages.stop_stage(at(config, here), "stop_probe", progress=False)
    moved = at(config, there)
    stages.bank_stage(moved, engine=NoEngine(), progress=False)
    stages.labels_stage(moved, engine=NoEngine(), progress=False)
    assert stages.is_trained(moved, "stop_probe")
    weights = there / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of the weights: a different model
    weights.write_bytes(bytes(data))
    assert not stages.is_trained(moved, "stop_probe")
    with pytest.raises(AssertionError, match="needed an engine"):
        stages.bank_stage(moved, engine=NoEngine(), progress=False)


def test_only_model_files_enter_the_key(two_copies):
    """Build notes and unrelated files leave the key alone; the config, tokenizer and template do not."""
    here, there = two_copies
    config = resolve("tiny")
    key = stages.bank_key(at(config, here))
    info = json.loads((there / "build_info.json").read_text())
    (there / "build_info.json").write_text(json.dumps({**info, "wall_time_s": info["wall_time_s"] + 1}))
    (there / "README.md").write_text("notes\n")
    assert stages.bank_key(at(config, there)) == key
    template = there / "chat_template.jinja"
    template.write_text(template.read_text() + " ")
    assert stages.bank_key(at(config, there))["model"] != key["model"]


def test_paths_and_speed_settings_stay_out_of_the_keys(tmp_path):
    a = resolve("tiny", results_root=str(tmp_path / "a"), figures_dir=str(tmp_path / "fa"), workers=1)
    b = resolve("tiny", results_root=str(tmp_path / "b"), figures_dir=str(tmp_path / "fb"), workers=2)
    assert stages.bank_key(a) == stages.bank_key(b) and stages.labels_key(a) == stages.labels_key(b)


def test_a_model_given_as_a_directory_is_keyed_by_content(two_copies):
    here, there = two_copies
    a, b = (resolve("tiny", model=str(d), benchmark="toy", train_problems="toy") for d in (here, there))
    assert stages.bank_key(a) == stages.bank_key(b)
    assert stages.labels_key(a) == stages.labels_key(b)
    assert a.labels.model == b.labels.model == "sha256:" + stages.model_identity(here)["sha256"]
    assert str(here) not in repr(stages.labels_key(a)) and resolve("tiny").labels.model == "toy"  # presets: the name
    weights = there / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one byte of the weights: a different model
    weights.write_bytes(bytes(data))
    changed = resolve("tiny", model=str(there), benchmark="toy", train_problems="toy")
    assert changed.labels.model != a.labels.model
    assert config_hash(stages.labels_key(changed)) != config_hash(stages.labels_key(a))
