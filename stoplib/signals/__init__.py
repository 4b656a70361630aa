"""The taxonomy of pruning signals (paper Table 1), one module per type, one registry."""

from .base import REGISTRY, Signal, SignalInfo, make_signal, register, top_k
from . import controls, type1, type2, type3, type4  # noqa: F401  (registers the signals)

__all__ = ["REGISTRY", "Signal", "SignalInfo", "make_signal", "register", "top_k"]
