"""CPU speed-ups of the HF engine that change no output bit.

- Grouped-query attention runs through ``scaled_dot_product_attention(enable_gqa=True)`` instead
  of transformers' copy of every KV head per query head (``repeat_kv``), which dominated a decode
  step; the outputs are bit-identical (``use_gqa_sdpa``).
- On glibc, tensors of ``MMAP_THRESHOLD`` bytes or more get their own mmap
  (``limit_heap_fragmentation``). By default glibc raises that threshold to 32 MB after the first
  large free, so every (rows x vocabulary) logits-sized temporary of a decode step went to the
  heap, where long-lived small allocations in between kept the freed space from being reused or
  returned: on SmolLM2 the heap grew by ~8 MB per step, to more than the KV cache itself.
"""

from __future__ import annotations

from typing import Any

import torch

GQA_SDPA = "stoplib_gqa_sdpa"
# Allocations of at least this many bytes are served by mmap and returned to the OS when freed (see
# limit_heap_fragmentation): the logits of 64 rows of a 49k vocabulary are 12.6 MB. Organism-sized
# tensors stay far below it. Costs a few page faults per large tensor (~1-3% of a SmolLM2 step).
MMAP_THRESHOLD = 8 << 20


def _gqa_sdpa_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                        is_causal: bool | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' SDPA attention, except that with a mask on CPU grouped-query attention goes to
    ``scaled_dot_product_attention(enable_gqa=True)`` rather than through ``repeat_kv``.

    transformers enables GQA in SDPA only without a mask (a CUDA kernel restriction); otherwise it
    copies every KV head ``num_key_value_groups`` times per layer and step. On CPU, torch's kernel
    takes the mask and the grouped heads directly, with bit-identical outputs (checked on shapes
    from 1 to 600 positions, 1-40 queries, 1-3 KV heads x 2-4 groups; tests/test_engine_hf.py).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if (attention_mask is not None and query.device.type == "cpu" and getattr(module, "num_key_value_groups", 1) > 1
            and kwargs.get("position_bias") is None and kwargs.get("cache") is None
            and not kwargs.get("output_attentions", False)):
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=False,
            enable_gqa=True,
        )
        return out.transpose(1, 2).contiguous(), None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                  is_causal=is_causal, **kwargs)


def use_gqa_sdpa(model: Any) -> bool:
    """Switch a CPU model that uses SDPA with grouped-query attention to ``_gqa_sdpa_attention``.

    Returns whether it switched. Models without GQA (e.g. the organism), on other devices or with
    another attention implementation are left alone. The switch changes no output bit, only speed
    (it applies to everything that runs the model, e.g. a StopScorer sharing it).
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    if not heads or kv_heads >= heads or next(model.parameters()).device.type != "cpu":
        return False
    AttentionInterface.register(GQA_SDPA, _gqa_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(GQA_SDPA, sdpa_mask)
    config._attn_implementation = GQA_SDPA
    return True


def limit_heap_fragmentation(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc serve every allocation of ``threshold`` bytes or more with its own mmap.

    This is process-wide (``mallopt(M_MMAP_THRESHOLD)``, which also turns off glibc's dynamic
    raising of the threshold). Returns False where it does not apply (not Linux/glibc).
    """
    import ctypes
    import platform
    import sys

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, int(threshold)))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False
