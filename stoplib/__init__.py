"""stoplib: early path pruning for parallel reasoning (STOP, arXiv 2604.16029, and Types I-IV).

The notebook-facing API: configs, stages, engines, signals, the STOP module, metrics, plots.
Heavy submodules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = ("bank", "config", "engines", "grading", "labels", "metrics", "paper", "pipeline", "plotting",
               "problems", "prompts", "scaling", "signals", "stages", "stop", "store", "toy", "train")


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "resolve":
        from .config import resolve

        return resolve
    raise AttributeError(f"module 'stoplib' has no attribute {name!r}")


__all__ = [*_SUBMODULES, "resolve", "__version__"]
