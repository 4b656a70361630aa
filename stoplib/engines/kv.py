"""A KV cache that appends in place into a preallocated buffer.

``DynamicCache`` concatenates on every step, copying the whole cache (O(S) per token, O(S^2)
per path). ``GrowingCache`` keeps per-layer buffers with spare capacity (doubling when full),
so appending a token writes only that token. It behaves like a ``DynamicCache`` for the
model and for ``crop`` / ``batch_select_indices``, which the engine and STOP's Check use.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values are views of a buffer with spare capacity."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.dtype, self.device = key_states.dtype, key_states.device
        self._k = self._v = None
        self._len = 0
        self.is_initialized = True

    @property
    def keys(self) -> torch.Tensor:  # type: ignore[override]
        return self._k[..., : self._len, :] if getattr(self, "_k", None) is not None else torch.tensor([])

    @keys.setter
    def keys(self, value: torch.Tensor | None) -> None:
        self._k = value
        self._len = 0 if value is None or value.dim() < 4 else value.shape[-2]

    @property
    def values(self) -> torch.Tensor:  # type: ignore[override]
        return self._v[..., : self._len, :] if getattr(self, "_v", None) is not None else torch.tensor([])

    @values.setter
    def values(self, value: torch.Tensor | None) -> None:
        self._v = value

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._k is None or self._k.dim() < 4 or self._len + n > self._k.shape[-2] or self._k.shape[0] != key_states.shape[0]:
            self._grow(key_states, value_states, self._len + n)
        self._k[..., self._len : self._len + n, :] = key_states
        self._v[..., self._len : self._len + n, :] = value_states
        self._len += n
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        b, h, _, d = key_states.shape
        capacity = max(64, 2 * needed)
        k = key_states.new_empty((b, h, capacity, d))
        v = value_states.new_empty((b, h, capacity, value_states.shape[-1]))
        if self._k is not None and self._k.dim() == 4 and self._len:
            k[..., : self._len, :] = self._k[..., : self._len, :]
            v[..., : self._len, :] = self._v[..., : self._len, :]
        self._k, self._v = k, v

    def get_seq_length(self) -> int:
        return self._len if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes a negative number of tokens to remove")
        self._len = max(0, self._len + tokens_to_remove)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0:
            self._k, self._v = self._k[indices], self._v[indices]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            self._k = self._k.repeat_interleave(repeats, dim=0)
            self._v = self._v.repeat_interleave(repeats, dim=0)


class GrowingCache(DynamicCache):
    """A ``DynamicCache`` made of ``GrowingLayer``s (pass it as ``past_key_values``)."""

    def __init__(self) -> None:
        Cache.__init__(self, layer_class_to_replicate=GrowingLayer)
