"""Stage-1 KV caches of training records, so that each training step runs only the [STOP] tokens."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from transformers.cache_utils import DynamicCache

from .label_records import LabelRecord
from .prefix_scorer import common_prefix_len, left_pad


class PrefixStates:
    """Stage-1 KV caches of a list of records, computed once and reused every epoch.

    The base model is frozen and the adapter acts only on the [STOP] positions, so a prefix's
    KV cache is the same in every epoch: caching it leaves each training step only the M
    [STOP] tokens to run. The beginning all records share (system turn, few-shot examples) is
    stored once; each record keeps the rest of its prefix. ``batch(rows)`` assembles the cache
    and attention mask of a batch, exactly as stage 1 would have produced them (up to float
    rounding).
    """

    def __init__(self, scorer: Any, records: Sequence[LabelRecord], batch_size: int = 32) -> None:
        seqs = [list(r.prefix_token_ids) for r in records]
        self.shared = min(common_prefix_len(seqs), min(len(s) for s in seqs) - 1) if len(seqs) > 1 else 0
        device = scorer.device
        self._shared_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        if self.shared:
            cache = scorer.encode_shared(torch.tensor([seqs[0][: self.shared]], device=device))
            self._shared_kv = [(layer.keys, layer.values) for layer in cache.layers]
        # every record's rest, left-padded with zeros to the longest: one (N, heads, width, dim)
        # tensor per layer, so a batch is a gather and a slice, not a pad per record
        self._lengths = [len(s) - self.shared for s in seqs]
        self._width = max(self._lengths)
        self._layers: list[tuple[torch.Tensor, torch.Tensor]] = []
        for start in range(0, len(seqs), batch_size):
            part = [s[self.shared:] for s in seqs[start : start + batch_size]]
            ids, rest_mask = left_pad(part, scorer.pad_id, device)
            mask = torch.cat([torch.ones((len(part), self.shared), dtype=rest_mask.dtype, device=device), rest_mask], 1)
            cache = DynamicCache(ddp_cache_data=[(k.expand(len(part), -1, -1, -1).contiguous(),
                                                  v.expand(len(part), -1, -1, -1).contiguous())
                                                 for k, v in self._shared_kv]) if self.shared else None
            if cache is None:
                cache = scorer.encode_prefix(ids, rest_mask)
            else:
                cache = scorer.extend_prefix(cache, ids, mask)
            if not self._layers:
                self._layers = [tuple(torch.zeros((len(seqs), t.shape[1], self._width, t.shape[3]), dtype=t.dtype,
                                                  device=t.device) for t in (layer.keys, layer.values))
                                for layer in cache.layers]
            for row, seq in enumerate(part):
                n = len(seq)
                for (keys, values), layer in zip(self._layers, cache.layers):
                    keys[start + row, :, self._width - n:] = layer.keys[row, :, -n:]
                    values[start + row, :, self._width - n:] = layer.values[row, :, -n:]
            del cache

    @staticmethod
    def nbytes_needed(scorer: Any, records: Sequence[LabelRecord]) -> int:
        """Bytes the cached states of ``records`` take (their shared beginning counted once)."""
        config = scorer.base_model.config
        config = getattr(config, "get_text_config", lambda **_: config)(decoder=True)
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        per_token = 2 * config.num_hidden_layers * heads * head_dim * scorer.head.weight.element_size()
        seqs = [r.prefix_token_ids for r in records]
        shared = common_prefix_len(seqs)
        return per_token * (shared + len(seqs) * max(len(q) - shared for q in seqs))  # rests padded to the longest

    def batch(self, rows: Sequence[int]) -> tuple[Any, torch.Tensor]:
        """(cache, attention mask (B, S)) of the records at ``rows``, left-padded after the shared part."""
        lengths = [self._lengths[r] for r in rows]
        width = max(lengths)
        index = torch.tensor(list(rows), device=self._layers[0][0].device)
        layers = []
        for i, (keys, values) in enumerate(self._layers):
            k, v = keys[index, :, self._width - width:], values[index, :, self._width - width:]
            if self.shared:
                sk, sv = self._shared_kv[i]
                k = torch.cat([sk.expand(len(rows), -1, -1, -1), k], dim=2)
                v = torch.cat([sv.expand(len(rows), -1, -1, -1), v], dim=2)
            layers.append((k, v))
        mask = torch.zeros((len(rows), self.shared + width), dtype=torch.long, device=layers[0][0].device)
        mask[:, : self.shared] = 1
        for j, n in enumerate(lengths):
            mask[j, self.shared + width - n:] = 1
        return DynamicCache(ddp_cache_data=layers), mask
