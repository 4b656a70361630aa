"""Type III — internal, non-learnable: raw confidence of the generating model.

Computed from the per-token statistics every engine records under the raw (T=1) distribution:
``logprobs`` (T,) chosen-token log-probability, ``entropies`` (T,) entropy of the full
next-token distribution (nats), ``top_logprobs`` (T, k) the k largest log-probabilities, sorted
in decreasing order (k = ``SamplingParams.logprobs``, 20 by default).

DeepConf (Fu, Wang, Tian, Zhao, "Deep Think with Confidence", arXiv 2508.15260, §2; official
code github.com/facebookresearch/deepconf, ``helper.py`` and ``analysis_offline.py``):

* token confidence (Eq. 2): ``C_i = -(1/k) * sum_{j=1..k} log P_i(j)`` over the top-k
  log-probabilities at position i (the paper and code use k = 20). Higher = more peaked;
* average trace confidence (Eq. 3): ``C_avg = (1/N) * sum_i C_i``;
* group confidence (Eq. 4): ``C_G = (1/|G|) * sum_{t in G} C_t`` over a window G of ``w``
  consecutive tokens. As in the official code (``compute_least_grouped``,
  ``calculate_bottom_window_confidence``) the windows are all complete sliding windows
  ``[i, i + w)`` for ``i = 0 .. T - w`` (stride 1); a prefix shorter than ``w`` has one group,
  its whole length;
* bottom-10% group confidence (Eq. 5): the mean of the lowest ``max(1, int(0.1 * #groups))``
  group confidences (the code's ``int`` truncation, not a quantile interpolation);
* lowest group confidence (Eq. 6): ``C_least = min_G C_G``;
* tail confidence (Eq. 7): the mean token confidence of the last ``w_tail`` tokens (the whole
  prefix if shorter).

(Equation numbers: arXiv v1 §2, Eqs. 1-7, as we recall them; the PDF was not at hand to
re-check the numbering. The formulas themselves were checked against the official code and
summaries of the paper, and this module follows the code where the two could differ.)

Window size. DeepConf uses w = 2048 (and tail 2048) on complete traces of ~10k-30k tokens. Here
the signal reads a *prefix* of L tokens (paper: L = 2048), where w = 2048 would make every group
statistic equal the mean. Default: ``w = ceil(window_frac * L)`` with ``window_frac = 1/4`` and L
the longest prefix in the scored batch (every unfinished prefix of a check has exactly L tokens,
so all prefixes of a problem share one window): 512 tokens at L = 2048, 9 tokens (about one
step line) for the toy organism's L = 36. DeepConf's ratio (2048 over ~13k-token traces) is
about 1/6; 1/4 keeps a handful of non-overlapping windows per prefix. Pass ``window=`` for a
fixed size (``window=2048`` is DeepConf's own setting).

Non-finite log-probabilities (a float16 underflow in a stored bank) are clamped to
``LOGPROB_FLOOR`` = log(1e-45) so that every score stays finite.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..engines.base import Path
from ..problems import Problem
from .base import Signal, SignalInfo, register

LOGPROB_FLOOR = math.log(1e-45)  # about -103.6: below the smallest positive float32
TAIL_MASS_FLOOR = 1e-9  # the top-k mass is summed from stored (possibly float16) log-probabilities


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


# --------------------------------------------------------------------------------------------
# DeepConf formulas on arrays (public: tests and notebooks use them directly)


def _clean(logprobs: np.ndarray) -> np.ndarray:
    lp = np.asarray(logprobs, dtype=np.float64)
    return np.where(np.isfinite(lp), lp, LOGPROB_FLOOR).clip(min=LOGPROB_FLOOR)


def token_confidence(top_logprobs: np.ndarray, k: int | None = None) -> np.ndarray:
    """DeepConf token confidence (Eq. 2): ``C_i = -(1/k) sum_{j<=k} log P_i(j)``, shape (T,).

    ``top_logprobs`` (T, K) holds the K largest log-probabilities per position in decreasing
    order; ``k`` (default K) uses the first k columns.
    """
    lp = np.asarray(top_logprobs)
    if lp.ndim != 2 or lp.shape[1] == 0:
        raise ValueError("DeepConf confidences need top-k log-probabilities per token; the paths "
                         "carry none (sample with SamplingParams(logprobs=20))")
    k = lp.shape[1] if k is None else int(k)
    if not 1 <= k <= lp.shape[1]:
        raise ValueError(f"k must be in 1..{lp.shape[1]} (the stored top-k), got {k}")
    return -_clean(lp[:, :k]).mean(axis=1)


def group_confidences(conf: np.ndarray, window: int) -> np.ndarray:
    """Group confidences (Eq. 4): means of all complete windows of ``window`` consecutive token
    confidences (stride 1), shape (T - window + 1,); ``[mean(conf)]`` if T < window; ``[]`` if T = 0."""
    c = np.asarray(conf, dtype=np.float64)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if c.size == 0:
        return c
    if c.size < window:
        return np.array([c.mean()])
    csum = np.concatenate([[0.0], np.cumsum(c)])
    return (csum[window:] - csum[:-window]) / window


def bottom_fraction_mean(groups: np.ndarray, fraction: float = 0.1) -> float:
    """Bottom-x% group confidence (Eq. 5): mean of the ``max(1, int(fraction * G))`` lowest groups."""
    g = np.asarray(groups, dtype=np.float64)
    if g.size == 0:
        return 0.0
    m = max(1, int(g.size * fraction))
    return float(np.sort(g)[:m].mean())


def tail_mean(conf: np.ndarray, tail: int) -> float:
    """Tail confidence (Eq. 7): mean of the last ``tail`` token confidences (all if fewer)."""
    c = np.asarray(conf, dtype=np.float64)
    return float(c[-tail:].mean()) if c.size else 0.0


def resolve_window(lengths: Sequence[int], window: int | None, window_frac: float) -> int:
    """The window actually used: ``window`` if given, else ``max(1, ceil(window_frac * max(lengths)))``."""
    if window is not None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        return int(window)
    if not 0 < window_frac <= 1:
        raise ValueError(f"window_frac must be in (0, 1], got {window_frac}")
    longest = max(lengths, default=1)
    return max(1, math.ceil(window_frac * longest))


class _DeepConf(Signal):
    """Shared constructor: ``k`` top log-probabilities per token, group window (see module doc)."""

    def __init__(self, k: int | None = None, window: int | None = None, window_frac: float = 0.25) -> None:
        self.k = k
        self.window = window
        self.window_frac = window_frac
        resolve_window([1], window, window_frac)  # validate early

    def _window(self, prefixes: Sequence[Path]) -> int:
        return resolve_window([len(p.token_ids) for p in prefixes], self.window, self.window_frac)

    def _conf(self, path: Path) -> np.ndarray:
        if len(path.token_ids) == 0:
            return np.zeros(0)
        return token_confidence(path.top_logprobs, self.k)

    def score(self, prefixes: Sequence[Path], problem: Problem | None = None) -> np.ndarray:
        w = self._window(prefixes)
        return np.array([self._stat(self._conf(p), w) if len(p.token_ids) else 0.0 for p in prefixes], dtype=float)

    def _stat(self, conf: np.ndarray, window: int) -> float:
        raise NotImplementedError


@register(SignalInfo("deepconf_mean", "III", "internal", False,
                     "DeepConf average trace confidence C_avg (Eq. 3): mean over prefix tokens of "
                     "C_i = -(1/k) sum of the top-k log-probabilities (Eq. 2)"))
class DeepConfMean(_DeepConf):
    def _stat(self, conf: np.ndarray, window: int) -> float:
        return float(conf.mean())


@register(SignalInfo("deepconf_lowest_group", "III", "internal", False,
                     "DeepConf lowest group confidence C_least (Eq. 6): min over sliding windows of the "
                     "window-mean token confidence (Eq. 4)"))
class DeepConfLowestGroup(_DeepConf):
    def _stat(self, conf: np.ndarray, window: int) -> float:
        return float(group_confidences(conf, window).min())


@register(SignalInfo("deepconf_bottom10", "III", "internal", False,
                     "DeepConf bottom-10% group confidence (Eq. 5): mean of the lowest 10% of the "
                     "sliding-window group confidences"))
class DeepConfBottom10(_DeepConf):
    def __init__(self, k: int | None = None, window: int | None = None, window_frac: float = 0.25,
                 fraction: float = 0.1) -> None:
        super().__init__(k, window, window_frac)
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def _stat(self, conf: np.ndarray, window: int) -> float:
        return bottom_fraction_mean(group_confidences(conf, window), self.fraction)


@register(SignalInfo("deepconf_tail", "III", "internal", False,
                     "DeepConf tail confidence (Eq. 7): mean token confidence of the last w tokens"))
class DeepConfTail(_DeepConf):
    def __init__(self, k: int | None = None, window: int | None = None, window_frac: float = 0.25,
                 tail: int | None = None) -> None:
        super().__init__(k, window, window_frac)
        if tail is not None and tail < 1:
            raise ValueError(f"tail must be >= 1, got {tail}")
        self.tail = tail

    def _stat(self, conf: np.ndarray, window: int) -> float:
        return tail_mean(conf, self.tail or window)


@register(SignalInfo("mean_entropy", "III", "internal", False,
                     "minus the mean entropy (nats) of the full next-token distribution over the prefix"))
class MeanEntropy(Signal):
    """score = -(1/T) sum_i H_i with H_i = -sum_j P_i(j) log P_i(j) (DeepConf Eq. 1), exact (the
    engines record the entropy of the full distribution). Lower entropy = keep."""

    def score(self, prefixes: Sequence[Path], problem: Problem | None = None) -> np.ndarray:
        out = []
        for p in prefixes:
            h = np.asarray(p.entropies, dtype=np.float64)
            out.append(-float(np.nan_to_num(h, nan=0.0, posinf=0.0).mean()) if h.size else 0.0)
        return np.array(out, dtype=float)


@register(SignalInfo("perplexity", "III", "internal", False,
                     "minus the perplexity exp(-mean chosen-token log-probability) of the prefix"))
class Perplexity(Signal):
    """score = -PPL = -exp(-(1/T) sum_i log P_i(x_i)). A monotone transform of ``mean_logprob``:
    the same ranking, kept as its own entry because the paper names perplexity."""

    def score(self, prefixes: Sequence[Path], problem: Problem | None = None) -> np.ndarray:
        out = []
        for p in prefixes:
            lp = _clean(p.logprobs)
            out.append(-float(np.exp(min(-lp.mean(), 700.0))) if lp.size else 0.0)
        return np.array(out, dtype=float)


def self_certainty_tokens(top_logprobs: np.ndarray, vocab_size: int | None, mode: str = "uniform_tail") -> np.ndarray:
    """Per-token self-certainty approximations, shape (T,). See :class:`SelfCertainty`."""
    lp = _clean(top_logprobs)
    if lp.ndim != 2 or lp.shape[1] == 0:
        raise ValueError("self-certainty needs top-k log-probabilities per token (SamplingParams(logprobs=20))")
    k = lp.shape[1]
    if mode == "topk":
        top_mass = np.exp(lp).sum(axis=1)
        return -math.log(k) - (lp - np.log(top_mass)[:, None]).mean(axis=1)
    if mode != "uniform_tail":
        raise ValueError(f"mode must be 'uniform_tail' or 'topk', got {mode!r}")
    if vocab_size is None or vocab_size < k:
        raise ValueError(f"vocab_size must be given and >= the stored top-k ({k}), got {vocab_size}")
    v = int(vocab_size)
    top_sum = lp.sum(axis=1)
    rest = v - k
    if rest == 0:  # the whole distribution is stored: exact
        return -math.log(v) - top_sum / v
    tail_mass = np.clip(1.0 - np.exp(lp).sum(axis=1), TAIL_MASS_FLOOR, None)
    tail_sum = rest * (np.log(tail_mass) - math.log(rest))
    return -math.log(v) - (top_sum + tail_sum) / v



@register(SignalInfo("self_certainty", "III", "internal", False,
                     "self-certainty (Kang et al. 2025): mean over tokens of KL(uniform || P_i), approximated "
                     "from the top-k log-probabilities with a uniform tail"))
class SelfCertainty(Signal):
    """Self-certainty (Kang, Zhao, Song, "Scalable Best-of-N Selection for Large Language Models via
    Self-Certainty", arXiv 2502.18581): the mean over generated tokens of the KL divergence from
    the uniform distribution U over the vocabulary (size V) to the next-token distribution P_i::

        SC = (1/T) sum_i KL(U || P_i) = (1/T) sum_i [ -log V - (1/V) sum_{j=1..V} log P_i(j) ]

    Higher = more certain = keep. The exact value needs all V log-probabilities; we store the
    top-k (k = 20) and the entropy. The entropy does not bound ``sum_j log P_i(j)`` (a tail
    probability can be arbitrarily small), so it cannot help; the top-k can:

    * ``mode="uniform_tail"`` (default, needs ``vocab_size`` = the model's logits dimension,
      ``model.config.vocab_size``): with tail mass ``r_i = 1 - sum_{j<=k} P_i(j)`` spread over the
      other ``V - k`` tokens, Jensen's inequality gives
      ``sum_{j>k} log P_i(j) <= (V - k) log(r_i / (V - k))``, with equality iff the tail is
      uniform. We use that value, so the score is a *lower bound* on the exact self-certainty
      (exact when the tail is uniform, or when k = V). For a large vocabulary the tail term
      dominates: the score is then close to ``mean_i -log r_i`` + const, i.e. it ranks by how much
      mass the top-k holds. ``r_i`` is floored at ``TAIL_MASS_FLOOR`` = 1e-9 (the top-k mass is summed
      from stored, possibly float16, log-probabilities, so smaller tails are not resolved).
      ``tokenizer=`` sets V = ``len(tokenizer)``, which can be smaller than the logits
      dimension (padded embedding rows): prefer ``vocab_size``.
    * ``mode="topk"``: the exact self-certainty of the top-k distribution renormalised
      (``P~ = P / sum_{j<=k} P``): ``KL(U_k || P~_i) = -log k - (1/k) sum_{j<=k} log P~_i(j)``.
      It equals DeepConf's token confidence ``C_i - log k + log(sum_{j<=k} P_i(j))``: DeepConf's
      C_i is self-certainty restricted to the top-k.
    """

    def __init__(self, vocab_size: int | None = None, mode: str = "uniform_tail", tokenizer=None) -> None:
        if mode not in ("uniform_tail", "topk"):
            raise ValueError(f"mode must be 'uniform_tail' or 'topk', got {mode!r}")
        if vocab_size is None and tokenizer is not None:
            vocab_size = len(tokenizer)
        if mode == "uniform_tail" and vocab_size is None:
            raise ValueError("self_certainty (mode='uniform_tail') needs vocab_size= (the model's "
                             "config.vocab_size) or tokenizer=; pass mode='topk' for the top-k-only variant")
        self.vocab_size = vocab_size
        self.mode = mode

    def score(self, prefixes: Sequence[Path], problem: Problem | None = None) -> np.ndarray:
        out = []
        for p in prefixes:
            if len(p.token_ids) == 0:
                out.append(0.0)
                continue
            out.append(float(self_certainty_tokens(p.top_logprobs, self.vocab_size, self.mode).mean()))
        return np.array(out, dtype=float)
