"""Type III — internal, non-learnable: raw confidence of the generating model.

Computed from the per-token statistics every engine records (raw T=1 distribution).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..engines.base import Path
from ..problems import Problem
from .base import Signal, SignalInfo, register


@register(SignalInfo("mean_logprob", "III", "internal", False,
                     "mean chosen-token log-probability of the prefix (negative log-perplexity)"))
class MeanLogprob(Signal):
    def score(self, prefixes: Sequence[Path], problem: Problem | None = None) -> np.ndarray:
        return np.array([float(np.mean(p.logprobs)) if len(p.logprobs) else 0.0 for p in prefixes])


@register(SignalInfo("min_logprob", "III", "internal", False,
                     "lowest chosen-token log-probability in the prefix"))
class MinLogprob(Signal):
    def score(self, prefixes: Sequence[Path], problem: Problem | None = None) -> np.ndarray:
        return np.array([float(np.min(p.logprobs)) if len(p.logprobs) else 0.0 for p in prefixes])
