"""Engines: the Hugging Face engine (any CPU/GPU) and, on GPU machines, vLLM."""

from __future__ import annotations

from typing import Any

from .base import Engine, Launch, ReasoningPath, SamplingParams, keep_all


def make_engine(name: str, model_path: str, *, batch_size: int = 64, **kwargs: Any) -> Engine:
    """Build the engine called ``name`` ("hf" or "vllm") on ``model_path``."""
    if name == "hf":
        from .hf import HFEngine

        return HFEngine(model_path, batch_size=batch_size, **kwargs)
    if name == "vllm":
        try:
            from .vllm import VLLMEngine  # type: ignore[import-not-found]
        except ImportError as err:
            raise ImportError(
                "engine='vllm' needs vLLM and stoplib's vLLM engine (stoplib/engines/vllm.py); "
                f"install with `pip install -e .[vllm]` on a GPU machine ({err})"
            ) from err
        return VLLMEngine(model_path, **kwargs)
    raise ValueError(f"unknown engine {name!r}; choose 'hf' or 'vllm'")


__all__ = ["Engine", "Launch", "ReasoningPath", "SamplingParams", "keep_all", "make_engine"]
