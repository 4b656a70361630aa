"""A KV cache that appends in place into a preallocated buffer.

``DynamicCache`` concatenates on every step, copying the whole cache (O(S) per token, O(S^2)
per path). ``GrowingCache`` keeps per-layer buffers with spare capacity (doubling when full),
so appending a token writes only that token. It behaves like a ``DynamicCache`` for the
model and for ``crop`` / ``batch_select_indices``, which the engine and STOP's Check use.

Memory: ``reserve(max_length)`` caps the capacity at the longest sequence the owner will
need (the engine knows it: prompt width + tokens to generate + a little slack for Check), so
doubling never allocates far past what is used; and ``batch_select_indices`` copies only the
filled positions (the capacity beyond stays untouched, hence not resident, for large buffers).
Growing or selecting replaces one layer's buffers at a time, so the transient extra memory is
one layer's worth, not a second copy of the whole cache.
"""

from __future__ import annotations

from typing import Sequence

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values are views of a buffer with spare capacity."""

    max_length: int | None = None  # cap on the capacity when growing (set by GrowingCache.reserve)

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

    @property
    def capacity(self) -> int:
        return self._k.shape[-2] if getattr(self, "_k", None) is not None and self._k.dim() == 4 else 0

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

    def _capacity_for(self, needed: int) -> int:
        capacity = max(64, 2 * needed)
        if self.max_length is not None and needed <= self.max_length:
            capacity = min(capacity, self.max_length)
        return max(capacity, needed)

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        b, h, _, d = key_states.shape
        capacity = self._capacity_for(needed)
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

    def _select(self, buffer: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Rows ``indices`` of ``buffer`` in a new buffer of the same capacity; only the filled
        positions are copied."""
        out = buffer.new_empty((len(indices),) + tuple(buffer.shape[1:]))
        out[..., : self._len, :] = buffer[indices, :, : self._len]
        return out

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length() > 0:
            self._k = self._select(self._k, indices)
            self._v = self._select(self._v, indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length() > 0:
            self._k = self._k.repeat_interleave(repeats, dim=0)
            self._v = self._v.repeat_interleave(repeats, dim=0)


class GrowingCache(DynamicCache):
    """A ``DynamicCache`` made of ``GrowingLayer``s (pass it as ``past_key_values``).

    ``max_length`` (optional): the longest sequence this cache will hold, see ``reserve``.
    """

    def __init__(self, max_length: int | None = None) -> None:
        Cache.__init__(self, layer_class_to_replicate=GrowingLayer)
        self.max_length = max_length

    def reserve(self, max_length: int | None) -> None:
        """Cap future growth at ``max_length`` positions (None: plain doubling). Appending past
        it still works (the buffers double from there)."""
        self.max_length = max_length
        for layer in self.layers:
            layer.max_length = max_length

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        while len(self.layers) <= layer_idx:
            layer = GrowingLayer()
            layer.max_length = self.max_length
            self.layers.append(layer)
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)

    def nbytes(self) -> int:
        """Bytes allocated by the key/value buffers (capacity included)."""
        total = 0
        for layer in self.layers:
            for buf in (getattr(layer, "_k", None), getattr(layer, "_v", None)):
                if buf is not None:
                    total += buf.numel() * buf.element_size()
        return total


def concat_right_aligned(caches: Sequence[Cache], widths: Sequence[int], width: int,
                         max_length: int | None = None) -> Cache:
    """The rows of ``caches`` (in order) in one cache of ``width`` positions.

    Cache ``i`` holds ``widths[i]`` positions; its rows are right-aligned, the positions on their
    left are zeros (the owner's attention mask is 0 there). The result is a ``GrowingCache``
    capped at ``max_length`` when the inputs are ``GrowingCache``s, else a ``DynamicCache``.
    """
    growing = all(isinstance(c, GrowingCache) for c in caches)
    out: Cache = GrowingCache(max_length=max_length) if growing else DynamicCache()
    for i in range(len(caches[0].layers)):
        first = caches[0].layers[i]
        layer = GrowingLayer() if growing else DynamicLayer()
        if growing:
            layer.max_length = max_length
        layer.lazy_initialization(first.keys, first.values)
        rows = sum(c.layers[i].keys.shape[0] for c in caches)
        capacity = layer._capacity_for(width) if growing else width
        k = first.keys.new_zeros((rows, first.keys.shape[1], capacity, first.keys.shape[-1]))
        v = first.values.new_zeros((rows, first.values.shape[1], capacity, first.values.shape[-1]))
        start = 0
        for cache, n in zip(caches, widths):
            part = cache.layers[i]
            end = start + part.keys.shape[0]
            k[start:end, :, width - n : width] = part.keys[..., :n, :]
            v[start:end, :, width - n : width] = part.values[..., :n, :]
            start = end
        if growing:
            layer._k, layer._v, layer._len = k, v, width
        else:
            layer.keys, layer.values = k, v
        out.layers.append(layer)
    return out
