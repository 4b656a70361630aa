"""Controls: signals that carry no information, to calibrate the others."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..engines.base import ReasoningPath
from ..engines.sampling import stream_key, uniforms
from ..problems import Problem
from .base import Signal, SignalInfo, register


@register(SignalInfo("random", "control", "none", False,
                     "uniform random scores, seeded per prefix: pruning at random keeps avg@N in expectation"))
class RandomSignal(Signal):
    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        keys = np.array([stream_key(self.seed + 7919, p.prompt_ids, p.sample_index) for p in prefixes], dtype=np.uint64)
        return uniforms(keys, np.zeros(len(prefixes)))
