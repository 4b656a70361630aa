"""Pruning signals: the taxonomy's common interface and registry.

A signal scores the N prefixes of one problem; **higher = keep**. Each registered signal
carries its place in the paper's taxonomy (Table 1): type I-IV, source (external: reads the
generated text or uses a separate model; internal: reads the generating model's own states or
logits) and whether it is learnable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..engines.base import ReasoningPath
from ..problems import Problem


@dataclass(frozen=True)
class SignalInfo:
    name: str
    type: str  # "I" | "II" | "III" | "IV" | "control"
    source: str  # "external" | "internal" | "none"
    learnable: bool
    description: str


class Signal:
    """Base class: subclasses set ``info`` and implement ``score``."""

    info: SignalInfo

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        """Scores (N,) for the prefixes of one problem; higher = keep."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        return self.info.name


REGISTRY: dict[str, tuple[SignalInfo, Callable[..., Signal]]] = {}


def register(info: SignalInfo) -> Callable[[Callable[..., Signal]], Callable[..., Signal]]:
    """Class/factory decorator adding a signal to the registry under ``info.name``."""

    def wrap(factory: Callable[..., Signal]) -> Callable[..., Signal]:
        if info.name in REGISTRY:
            raise ValueError(f"signal {info.name!r} is registered twice")
        REGISTRY[info.name] = (info, factory)
        if isinstance(factory, type):
            factory.info = info
        return factory

    return wrap


def make_signal(name: str, **kwargs: Any) -> Signal:
    """Build the registered signal ``name`` (kwargs go to its constructor)."""
    if name not in REGISTRY:
        raise KeyError(f"unknown signal {name!r}; registered: {sorted(REGISTRY)}")
    return REGISTRY[name][1](**kwargs)


def top_k(scores: Sequence[float], sample_indices: Sequence[int], k: int) -> list[int]:
    """Sample indices of the k best scores; ties go to the lower sample index (as in the
    authors' code). NaN scores rank last."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape != (len(sample_indices),):
        raise ValueError(f"{scores.shape[0] if scores.ndim else 0} scores for {len(sample_indices)} prefixes")
    order = sorted(range(len(scores)), key=lambda i: (np.isnan(scores[i]), -np.nan_to_num(scores[i]), sample_indices[i]))
    return [int(sample_indices[i]) for i in order[:k]]
