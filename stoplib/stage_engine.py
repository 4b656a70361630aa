"""The model side of a run as the stages load it: its sampling engine, tokenizer and vocabulary
size, and the torch threads of its preset."""

from __future__ import annotations

from typing import Any

import torch

from .config import RunConfig
from .engines import Engine, make_engine


def use_threads(config: RunConfig) -> None:
    """The model preset's torch threads (the organism: 1; extra threads only contend)."""
    if config.threads:
        torch.set_num_threads(config.threads)


def engine_for(config: RunConfig, **kwargs: Any) -> Engine:
    """The sampling engine of ``config`` (vLLM gets the config's tensor / pipeline parallel sizes)."""
    use_threads(config)
    if config.engine == "hf" and config.attn_implementation:
        kwargs.setdefault("attn_implementation", config.attn_implementation)
    if config.engine == "vllm":
        kwargs.setdefault("tensor_parallel_size", config.tensor_parallel_size)
        kwargs.setdefault("pipeline_parallel_size", config.pipeline_parallel_size)
    return make_engine(config.engine, config.model_path, batch_size=config.batch_size, **kwargs)


def vocab_size(config: RunConfig) -> int:
    """The model's vocabulary size (rows of its output layer), from its config."""
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(config.model_path)
    return int(getattr(model_config.get_text_config(decoder=True), "vocab_size"))


def load_tokenizer(config: RunConfig) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(config.model_path)
