"""Type III — internal, non-learnable: raw confidence of the generating model.

Computed from the per-token statistics every engine records under the raw (T=1) distribution:
``logprobs`` (T,) chosen-token log-probability, ``entropies`` (T,) entropy of the full
next-token distribution (nats), ``top_ids`` / ``top_logprobs`` (T, k) the k most likely tokens
and their log-probabilities, in decreasing order (k = ``SamplingParams.logprobs``, 20 by
default). DeepConf pins vLLM 0.10.2, whose V1 sampler also returns log-probabilities of the raw
logits (``logprobs_mode="raw_logprobs"``, before penalties and temperature).

DeepConf (Fu, Wang, Tian, Zhao, "Deep Think with Confidence", arXiv 2508.15260; reference code
github.com/facebookresearch/deepconf, ``deepconf/utils.py`` at commit 675529d, the same functions as
``helper.py`` / ``analysis_offline.py`` of its first release):

* token confidence: the paper's ``C_i = -(1/k) * sum_{j=1..k} log P_i(j)`` over the top-k
  log-probabilities at position i (k = 20). The reference code (``compute_confidence``, utils.py
  lines 41-50) averages every entry vLLM returns for ``logprobs=20``: the top 20 and, when the
  sampled token is not among them, the sampled token as a 21st entry; it then rounds
  ``-mean`` to 3 decimals. That is the default here (``token_confidence="deepconf"``, see
  :func:`deepconf_token_confidence`); ``token_confidence="topk"`` is the paper's formula over
  exactly the top k, unrounded (:func:`token_confidence`). The two differ by the rounding and at
  positions whose sampled token is outside the top k (sampling reaches past rank k unless it is
  restricted to the top k: the default ``SamplingParams`` keep the top 40 tokens, DeepConf's
  top-p 0.95 alone). Higher = more peaked = keep;
* average trace confidence: the mean of the token confidences (``calculate_mean_confidence``,
  lines 93-101);
* group confidence: the mean token confidence over a window of ``w`` consecutive tokens. As in
  ``calculate_bottom_window_confidence`` (lines 116-147) the groups are all complete sliding
  windows ``[i, i + w)`` for ``i = 0 .. T - w`` (stride 1), their means not rounded, and a prefix
  shorter than ``w`` has one group, its whole length. (The online early-stopping path,
  ``compute_least_grouped``, lines 53-62, rounds each window mean to 3 decimals; rounding is
  monotone, so the lowest group differs from it by less than 5e-4 and ranks paths alike);
* bottom-10% group confidence: the mean of the lowest ``max(1, int(0.1 * #groups))`` group
  confidences (line 138: ``int`` truncation, not a quantile interpolation);
* lowest group confidence: the lowest group confidence (the same function with
  ``bottom_percent=-1``, line 135);
* tail confidence: the mean token confidence of the last ``tail`` tokens, the whole prefix if
  shorter (``calculate_tail_confidence``, lines 104-113, ``tail_tokens=2048``).

Window size. DeepConf uses w = 2048 (and tail 2048) on complete traces of ~10k-30k tokens. Here
the signal reads a *prefix* of L tokens (paper: L = 2048), where w = 2048 would make every group
statistic equal the mean. Default: ``w = ceil(window_frac * L)`` with ``window_frac = 1/4`` and L
the longest prefix in the scored batch (every unfinished prefix of a check has exactly L tokens,
so all prefixes of a problem share one window): 512 tokens at L = 2048, 9 tokens (about one
step line) for the toy organism's L = 36. DeepConf's ratio (2048 over ~13k-token traces) is
about 1/6; 1/4 keeps a handful of non-overlapping windows per prefix. Pass ``window=`` for a
fixed size (``window=2048`` is DeepConf's own setting).

Non-finite log-probabilities (a float16 underflow in a stored bank) are clamped to
``LOGPROB_FLOOR`` = log(1e-45) so that every score stays finite. A bank stores ``top_logprobs``
in float16 (sampled-token log-probabilities in float32), so confidences read from a bank carry
float16 error (about 4e-3 per log-probability near -10) before the 3-decimal rounding.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..engines.base import ReasoningPath
from ..problems import Problem
from .base import Signal, SignalInfo, register

LOGPROB_FLOOR = math.log(1e-45)  # about -103.6: below the smallest positive float32
TAIL_MASS_FLOOR = 1e-9  # the top-k mass is summed from stored (possibly float16) log-probabilities


@register(SignalInfo("mean_logprob", "III", "internal", False,
                     "mean chosen-token log-probability of the prefix (negative log-perplexity)"))
class MeanLogprob(Signal):
    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        return np.array([float(np.mean(p.logprobs)) if len(p.logprobs) else 0.0 for p in prefixes])


@register(SignalInfo("min_logprob", "III", "internal", False,
                     "lowest chosen-token log-probability in the prefix"))
class MinLogprob(Signal):
    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        return np.array([float(np.min(p.logprobs)) if len(p.logprobs) else 0.0 for p in prefixes])


# --------------------------------------------------------------------------------------------
# DeepConf formulas on arrays (public: tests and notebooks use them directly)


def _clean(logprobs: np.ndarray) -> np.ndarray:
    lp = np.asarray(logprobs, dtype=np.float64)
    return np.where(np.isfinite(lp), lp, LOGPROB_FLOOR).clip(min=LOGPROB_FLOOR)


def token_confidence(top_logprobs: np.ndarray, k: int | None = None) -> np.ndarray:
    """Top-k token confidence (the paper's formula): ``C_i = -(1/k) sum_{j<=k} log P_i(j)``, shape (T,).

    ``top_logprobs`` (T, K) holds the K largest log-probabilities per position in decreasing
    order; ``k`` (default K) uses the first k columns. Not rounded; the sampled token is not added.
    """
    lp = _top(top_logprobs)
    return -_clean(lp[:, :_k(lp, k)]).mean(axis=1)


def chosen_in_top_k(token_ids: Sequence[int], chosen_logprobs: np.ndarray, top_ids: np.ndarray,
                    top_logprobs: np.ndarray, k: int | None = None) -> np.ndarray:
    """Whether each sampled token is among the first k stored top tokens, shape (T,) bool.

    Read from ``top_ids`` when they are stored (every engine records them, and the bank keeps
    them). Without them it is decided from the values: the sampled token's log-probability is at
    least the k-th largest, both rounded to float16 (the bank's precision for ``top_logprobs``),
    so a sampled token tied with the k-th within that precision counts as inside.
    """
    lp = _top(top_logprobs)
    k = _k(lp, k)
    ids = np.asarray(top_ids)
    if ids.ndim == 2 and ids.shape[0] == lp.shape[0] and ids.shape[1] >= k:
        return (ids[:, :k] == np.asarray(token_ids, dtype=np.int64)[:, None]).any(axis=1)
    chosen = _clean(chosen_logprobs)
    kth = _clean(lp[:, k - 1])
    return chosen.astype(np.float16) >= kth.astype(np.float16)


def deepconf_token_confidence(top_logprobs: np.ndarray, chosen_logprobs: np.ndarray, in_top_k: np.ndarray,
                              k: int | None = None, decimals: int | None = 3) -> np.ndarray:
    """DeepConf's reference token confidence, shape (T,).

    ``-mean`` of the top-k log-probabilities and, where the sampled token is not in the top k
    (``in_top_k`` False), its log-probability ``chosen_logprobs`` as a (k+1)-th entry, rounded
    to ``decimals`` (as ``compute_confidence`` does with what vLLM returns: round(-mean, 3),
    numpy's round half to even; ``None`` keeps full precision).
    """
    lp = _top(top_logprobs)
    k = _k(lp, k)
    chosen = _clean(chosen_logprobs)
    outside = ~np.asarray(in_top_k, dtype=bool)
    if chosen.shape != (lp.shape[0],) or outside.shape != (lp.shape[0],):
        raise ValueError(f"chosen_logprobs {chosen.shape} and in_top_k {outside.shape} need one entry per "
                         f"position of top_logprobs ({lp.shape[0]})")
    total = _clean(lp[:, :k]).sum(axis=1) + np.where(outside, chosen, 0.0)
    conf = -total / (k + outside)
    return conf if decimals is None else np.round(conf, decimals)


def _top(top_logprobs: np.ndarray) -> np.ndarray:
    lp = np.asarray(top_logprobs)
    if lp.ndim != 2 or lp.shape[1] == 0:
        raise ValueError("DeepConf confidences need top-k log-probabilities per token; the paths "
                         "carry none (sample with SamplingParams(logprobs=20))")
    return lp


def _k(lp: np.ndarray, k: int | None) -> int:
    k = lp.shape[1] if k is None else int(k)
    if not 1 <= k <= lp.shape[1]:
        raise ValueError(f"k must be in 1..{lp.shape[1]} (the stored top-k), got {k}")
    return k


def group_confidences(conf: np.ndarray, window: int) -> np.ndarray:
    """Group confidences: means of all complete windows of ``window`` consecutive token
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
    """Bottom-x% group confidence: mean of the ``max(1, int(fraction * G))`` lowest groups."""
    g = np.asarray(groups, dtype=np.float64)
    if g.size == 0:
        return 0.0
    m = max(1, int(g.size * fraction))
    return float(np.sort(g)[:m].mean())


def tail_mean(conf: np.ndarray, tail: int) -> float:
    """Tail confidence: mean of the last ``tail`` token confidences (all if fewer)."""
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


TOKEN_CONFIDENCES = ("deepconf", "topk")


class _DeepConf(Signal):
    """Shared constructor (see the module doc).

    ``k``: top log-probabilities per token (default: all stored). ``window`` / ``window_frac``:
    the group window. ``token_confidence``: ``"deepconf"`` (default) is the reference code's
    token confidence, the top k plus the sampled token when outside them, rounded to 3 decimals
    (:func:`deepconf_token_confidence`, membership from :func:`chosen_in_top_k`); ``"topk"`` is
    the mean over exactly the top k, unrounded (:func:`token_confidence`).
    """

    def __init__(self, k: int | None = None, window: int | None = None, window_frac: float = 0.25, *,
                 token_confidence: str = "deepconf") -> None:
        if token_confidence not in TOKEN_CONFIDENCES:
            raise ValueError(f"token_confidence must be one of {TOKEN_CONFIDENCES}, got {token_confidence!r}")
        self.k = k
        self.window = window
        self.window_frac = window_frac
        self.token_confidence = token_confidence
        resolve_window([1], window, window_frac)  # validate early

    def _window(self, prefixes: Sequence[ReasoningPath]) -> int:
        return resolve_window([len(p.token_ids) for p in prefixes], self.window, self.window_frac)

    def _conf(self, path: ReasoningPath) -> np.ndarray:
        if len(path.token_ids) == 0:
            return np.zeros(0)
        if self.token_confidence == "topk":
            return token_confidence(path.top_logprobs, self.k)
        inside = chosen_in_top_k(path.token_ids, path.logprobs, path.top_ids, path.top_logprobs, self.k)
        return deepconf_token_confidence(path.top_logprobs, path.logprobs, inside, self.k)

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        w = self._window(prefixes)
        return np.array([self._stat(self._conf(p), w) if len(p.token_ids) else 0.0 for p in prefixes], dtype=float)

    def _stat(self, conf: np.ndarray, window: int) -> float:
        raise NotImplementedError


@register(SignalInfo("deepconf_mean", "III", "internal", False,
                     "DeepConf average trace confidence: mean over prefix tokens of the token confidence "
                     "C_i = -mean of the top-k log-probabilities (and of the sampled token's when outside them)"))
class DeepConfMean(_DeepConf):
    def _stat(self, conf: np.ndarray, window: int) -> float:
        return float(conf.mean())


@register(SignalInfo("deepconf_lowest_group", "III", "internal", False,
                     "DeepConf lowest group confidence: min over sliding windows of the window-mean "
                     "token confidence"))
class DeepConfLowestGroup(_DeepConf):
    def _stat(self, conf: np.ndarray, window: int) -> float:
        return float(group_confidences(conf, window).min())


@register(SignalInfo("deepconf_bottom10", "III", "internal", False,
                     "DeepConf bottom-10% group confidence: mean of the lowest 10% of the "
                     "sliding-window group confidences"))
class DeepConfBottom10(_DeepConf):
    def __init__(self, k: int | None = None, window: int | None = None, window_frac: float = 0.25,
                 fraction: float = 0.1, *, token_confidence: str = "deepconf") -> None:
        super().__init__(k, window, window_frac, token_confidence=token_confidence)
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        self.fraction = fraction

    def _stat(self, conf: np.ndarray, window: int) -> float:
        return bottom_fraction_mean(group_confidences(conf, window), self.fraction)


@register(SignalInfo("deepconf_tail", "III", "internal", False,
                     "DeepConf tail confidence: mean token confidence of the last w tokens"))
class DeepConfTail(_DeepConf):
    def __init__(self, k: int | None = None, window: int | None = None, window_frac: float = 0.25,
                 tail: int | None = None, *, token_confidence: str = "deepconf") -> None:
        super().__init__(k, window, window_frac, token_confidence=token_confidence)
        if tail is not None and tail < 1:
            raise ValueError(f"tail must be >= 1, got {tail}")
        self.tail = tail

    def _stat(self, conf: np.ndarray, window: int) -> float:
        return tail_mean(conf, self.tail or window)


@register(SignalInfo("mean_entropy", "III", "internal", False,
                     "minus the mean entropy (nats) of the full next-token distribution over the prefix"))
class MeanEntropy(Signal):
    """score = -(1/T) sum_i H_i with H_i = -sum_j P_i(j) log P_i(j) (DeepConf's token entropy), exact (the
    engines record the entropy of the full distribution). Lower entropy = keep."""

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
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

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
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
      It equals ``C_i - log k + log(sum_{j<=k} P_i(j))`` with ``C_i`` the top-k token confidence
      (:func:`token_confidence`): that C_i is self-certainty restricted to the top-k.
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

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        out = []
        for p in prefixes:
            if len(p.token_ids) == 0:
                out.append(0.0)
                continue
            out.append(float(self_certainty_tokens(p.top_logprobs, self.vocab_size, self.mode).mean()))
        return np.array(out, dtype=float)
