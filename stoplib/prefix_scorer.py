"""What STOP and the text verifier share: batched scoring of token-id prefixes on a causal LM.

Left padding, the beginning a batch shares (encoded once), the transformer body of a possibly
peft-wrapped model and the LoRA target names a model has.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Sequence

import torch
from torch import nn

#: Sequences of a scoring batch that share at least this many leading tokens encode them once.
MIN_SHARED_TOKENS = 8


def decoder_body(model: nn.Module) -> nn.Module:
    """The transformer body (no LM head) of a causal LM, through any peft wrapper."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder()


def present_lora_targets(model: nn.Module, targets: tuple[str, ...]) -> list[str]:
    """The names in ``targets`` of the model's linear layers (also when another adapter wraps them)."""
    names = {name.rsplit(".", 1)[-1] for name, mod in model.named_modules()
             if isinstance(mod, nn.Linear) and not name.endswith(".base_layer") or hasattr(mod, "base_layer")}
    found = [t for t in targets if t in names]
    if not found:
        raise ValueError(f"none of the LoRA target modules {list(targets)} exist in the model (linear layers: {sorted(names)})")
    return found


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of token sequences (0 for fewer than two)."""
    if len(seqs) < 2:
        return 0
    first, n = seqs[0], min(len(s) for s in seqs)
    for i in range(n):
        token = first[i]
        if any(s[i] != token for s in seqs):
            return i
    return n


def left_pad(seqs: list[list[int]], pad_id: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into (ids, mask) tensors (B, S)."""
    if not seqs or any(len(s) == 0 for s in seqs):
        raise ValueError("cannot pad an empty batch or an empty sequence")
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):] = torch.as_tensor(s, dtype=torch.long)
        mask[r, width - len(s):] = 1
    return ids.to(device), mask.to(device)


class PrefixScorer(nn.Module):
    """Base class of STOP and the text verifier: batched scoring of token-id prefixes.

    Subclasses define ``forward(input_ids, attention_mask) -> logits (B,)`` on left-padded
    prefixes, ``encode_shared(ids) -> cache`` (a one-row KV cache of a shared beginning) and
    ``logits_on_cache(cache, ids, mask)`` (the logits of rows that continue that cache with
    ``ids``), ``head`` and ``tokenizer``; ``stoplib.train.train_stop`` trains any of them.
    """

    head: nn.Linear
    tokenizer: Any

    @torch.no_grad()
    def score(self, prefixes: Sequence[Sequence[int]], batch_size: int = 32) -> torch.Tensor:
        """Probabilities (N,) for token-id prefixes (prompt + generated prefix).

        The leading tokens a batch shares (the prompt of one problem's paths) are encoded once
        and their KV cache extended by each row's rest: the same numbers as encoding every row
        whole (up to float rounding), at a fraction of the cost for long prompts.
        """
        out = []
        for start in range(0, len(prefixes), batch_size):
            out.append(torch.sigmoid(self.logits(prefixes[start : start + batch_size])))
        return torch.cat(out) if out else torch.zeros(0)

    def logits(self, seqs: Sequence[Sequence[int]], rows: Sequence[int] | None = None,
               on_rows: Callable[[], ContextManager[Any]] = nullcontext) -> torch.Tensor:
        """Logits (B,) of a batch of token-id sequences (shared beginning encoded once).

        ``rows``: only those rows of the batch, laid out as in the whole batch (its padded width
        and shared beginning), with ``on_rows()`` entered around their forward: what one process
        of a data parallel group computes of a global batch (``stoplib.distributed``).
        """
        seqs = [list(s) for s in seqs]
        if not seqs or any(len(s) == 0 for s in seqs):
            raise ValueError("cannot score an empty batch or an empty sequence")
        picked: slice | list[int] = slice(None) if rows is None else list(rows)  # a slice: no copy
        count = len(seqs) if rows is None else len(picked)
        shared = min(common_prefix_len(seqs), min(len(s) for s in seqs) - 1)
        if shared < MIN_SHARED_TOKENS:
            ids, mask = left_pad(seqs, self.pad_id, self.device)
            with on_rows():
                return self(ids[picked], mask[picked])
        cache = self.encode_shared(torch.tensor([seqs[0][:shared]], device=self.device))
        cache.batch_repeat_interleave(count)
        ids, rest = left_pad([s[shared:] for s in seqs], self.pad_id, self.device)
        ids, rest = ids[picked], rest[picked]
        mask = torch.cat([torch.ones((count, shared), dtype=rest.dtype, device=self.device), rest], dim=1)
        with on_rows():
            return self.logits_on_cache(cache, ids, mask)

    def encode_shared(self, ids: torch.Tensor) -> Any:
        raise NotImplementedError

    def logits_on_cache(self, cache: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else int(self.tokenizer.eos_token_id)
