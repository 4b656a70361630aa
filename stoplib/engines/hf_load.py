"""Loading a causal LM and its tokenizer for the HF engine (and for STOP, verifiers and PRMs that
run their own copy): device and dtype resolution, and load errors that name the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """"auto" -> cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """"auto" -> bfloat16 on GPU, float32 on CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def load_model_and_tokenizer(
    model: str | Path,
    *,
    device: str = "auto",
    dtype: str | torch.dtype = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer from a hub id or a local directory (eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import check_model_dir

    text = str(model)
    local = Path(text).expanduser()
    if not local.exists() and (text.startswith(("/", "./", "../", "~")) or text.count("/") > 1):
        raise FileNotFoundError(f"model directory {text!r} does not exist (a hub id has the form 'owner/name')")
    if local.exists():
        check_model_dir(local)
    dev = resolve_device(device)
    kwargs: dict[str, Any] = dict(dtype=resolve_dtype(dtype, dev), revision=revision,
                                  trust_remote_code=trust_remote_code)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(model), **kwargs).to(dev).eval()
        tok = AutoTokenizer.from_pretrained(str(model), revision=revision, trust_remote_code=trust_remote_code)
    except Exception as err:  # transformers' and safetensors' errors, named by the model they concern
        if local.exists():
            raise ValueError(f"cannot load the model in {local} ({type(err).__name__}: {str(err)[:300]}): "
                             "its config, weights or tokenizer files are damaged or incomplete") from err
        if isinstance(err, OSError):
            raise OSError(f"model {text!r} is not a local directory and cannot be loaded from the Hugging Face "
                          f"hub or its cache ({str(err)[:300]}); check the id, or download it while online "
                          "(HF_HUB_OFFLINE=1 forbids downloads)") from err
        raise
    return lm, tok
