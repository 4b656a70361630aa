"""Type IV — internal, learnable: STOP reads the generating model's own KV cache.

``StopSignal`` runs the HF scorer; ``ServedStopSignal`` runs the same STOP inside vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..engines.base import Launch, ReasoningPath
from ..problems import Problem
from ..stop import StopScorer
from .base import Signal, SignalInfo, register


@register(SignalInfo("stop", "IV", "internal", True,
                     "STOP: [STOP] tokens + LoRA critique adapter + head over the prefix KV cache"))
class StopSignal(Signal):
    """Scores with a trained ``StopScorer``.

    On an engine that exposes its paused KV cache (``prefix_states``), ``score_launch`` appends
    the [STOP] tokens to that cache (the paper's Check, no re-encoding); ``score`` re-encodes
    prefixes (used for replay on a bank and on engines without cache access).
    """

    def __init__(self, scorer: StopScorer | None = None, checkpoint: str | Path | None = None,
                 batch_size: int = 64, **load_kwargs: Any) -> None:
        if scorer is None:
            if checkpoint is None:
                raise ValueError("StopSignal needs a scorer or a checkpoint directory")
            scorer = StopScorer.from_pretrained(checkpoint, **load_kwargs)
        self.scorer = scorer
        self.batch_size = batch_size

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        seqs = [p.prompt_ids + p.token_ids for p in prefixes]
        return self.scorer.score(seqs, batch_size=self.batch_size).cpu().numpy().astype(float)

    @torch.no_grad()
    def score_launch(self, engine: Any, launch: Launch) -> dict[tuple[int, int], float] | None:
        """Scores keyed by (prompt index, sample index) from the engine's cache, or None."""
        if not hasattr(engine, "prefix_states") or engine.model is not self.scorer.base_model:
            return None
        out: dict[tuple[int, int], float] = {}
        for paths, cache, mask in engine.prefix_states(launch):
            probs = torch.sigmoid(self.scorer.score_cache(cache, mask)).cpu().numpy()
            out.update({(p.prompt_index, p.sample_index): float(s) for p, s in zip(paths, probs)})
        return out


class ServedStopSignal(Signal):
    """STOP scores computed inside a ``VLLMEngine`` started with ``stop_checkpoint=``.

    ``score_launch`` is the paper's Check on the paused paths (on top of the prefix cache, the
    engine's ``stop_scores``); ``score`` scores any prefixes (replay on a bank) through the same
    engine (its ``stop_score``). The same signal as ``StopSignal`` (``info`` is shared), executed
    by vLLM instead of an HF copy of the model.
    """

    info = StopSignal.info

    def __init__(self, engine: Any) -> None:
        if getattr(engine, "stop_num_tokens", None) is None:
            raise ValueError("the engine serves no STOP checkpoint (VLLMEngine(..., stop_checkpoint=dir))")
        self.engine = engine

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        return self.engine.stop_score([p.prompt_ids + p.token_ids for p in prefixes])

    def score_launch(self, engine: Any, launch: Launch) -> dict[tuple[int, int], float] | None:
        """Scores keyed by (prompt index, sample index) when ``engine`` is the serving one, else None."""
        if engine is not self.engine:
            return None
        return self.engine.stop_scores(launch)
