"""Type II — external, learnable: a separate trained model judges the prefix text.

Both judges here read the *decoded text* of prompt + prefix and run their own model on it:
separate weights, their own tokenizer, a full re-encoding of every prefix, no access to the
generator's KV cache or hidden states (paper §2.2, Table 1; §5.2 "Type II requires full
sequence re-encoding"). Decoding needs the generator's tokenizer (``tokenizer=``) or an
``ids -> str`` callable (``decode=``).

* ``prm`` — a process reward model, used as the model card of Qwen2.5-Math-PRM-7B documents
  (huggingface.co/Qwen/Qwen2.5-Math-PRM-7B, "Quick Start"): the conversation
  ``[system, user = query, assistant = "<extra_0>".join(steps) + "<extra_0>"]`` rendered by the
  PRM's chat template, steps separated by blank lines ("\\n\\n"); the reward of step s is
  ``softmax(logits at the s-th "<extra_0>" position)[1]``, the probability of the positive
  class. The STOP paper's Type II baseline is LaBoR's early pruning with this PRM (App. D.1);
  it does not say how step rewards are aggregated, how steps are cut, or whether the prompt is
  included (App. C.5, D.1): all three are options here (defaults: min over steps,
  "\\n\\n", prompt included).
* ``verifier`` — the paper's "Type II-retrain" analogue (App. D, Table 13): an external model
  trained on the same Monte Carlo soft labels as STOP, reading only the text: defined in
  :mod:`stoplib.signals.verifier` (``TextVerifier``, ``VerifierSignal``) and importable from here;
  trained by :func:`stoplib.train.train_verifier`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..engines.base import ReasoningPath
from ..problems import Problem
from .base import SignalInfo, register
from .type1 import Decode, TextSignal
from .verifier import TextVerifier, VerifierConfig, VerifierSignal, retokenize_records  # noqa: F401  (importable here)

PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
PRM_STEP_TOKEN = "<extra_0>"
AGGREGATES = ("min", "last", "product", "mean")


def prm_steps(text: str, step_sep: str = "\n\n", partial_last: str = "keep") -> list[str]:
    """Steps of a response: ``text.split(step_sep)``, each stripped, empty ones removed.

    ``partial_last="drop"`` removes the last step when the text does not end with the separator
    (the step the prefix boundary cut); if that leaves no step, the partial step is kept.
    """
    if not step_sep:
        raise ValueError("the step separator must be non-empty")
    if partial_last not in ("keep", "drop"):
        raise ValueError(f"partial_last must be 'keep' or 'drop', got {partial_last!r}")
    steps = [s.strip() for s in text.split(step_sep)]
    steps = [s for s in steps if s]
    if partial_last == "drop" and len(steps) > 1 and not text.rstrip(" \t").endswith(step_sep):
        steps = steps[:-1]
    return steps


def prm_conversation(tokenizer: Any, query: str, steps: Sequence[str], system: str | None = PRM_SYSTEM,
                     step_token: str = PRM_STEP_TOKEN) -> str:
    """The PRM input text (model-card recipe): system / user / assistant with every step followed
    by ``step_token``, rendered by the tokenizer's chat template (``add_generation_prompt=False``).
    Without a chat template: ``system + "\\n\\n" + query + "\\n\\n" + assistant``."""
    assistant = step_token.join(steps) + step_token
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": query}, {"role": "assistant", "content": assistant}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    return "\n\n".join(m["content"] for m in messages)


def step_rewards(logits: torch.Tensor | np.ndarray, separator_mask: torch.Tensor | np.ndarray) -> np.ndarray:
    """Step rewards (n_steps,) from token-classification logits (S, 2) and a mask (S,) of the
    separator positions: the positive-class probability softmax(logits)[:, 1] at each separator."""
    logits = torch.as_tensor(logits, dtype=torch.float32)
    mask = torch.as_tensor(separator_mask, dtype=torch.bool)
    if logits.ndim != 2 or logits.shape[-1] != 2:
        raise ValueError(f"expected (seq_len, 2) logits, got {tuple(logits.shape)}")
    return torch.softmax(logits[mask], dim=-1)[:, 1].numpy().astype(np.float64)


def aggregate_rewards(rewards: Sequence[float], how: str = "min") -> float:
    """One score from step rewards: "min", "last", "mean" or "product" (returned as the sum of
    log rewards, the log of the product: same order, no underflow over many steps)."""
    r = np.asarray(rewards, dtype=np.float64)
    if how not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}, got {how!r}")
    if r.size == 0:
        raise ValueError("no step rewards to aggregate")
    if how == "min":
        return float(r.min())
    if how == "last":
        return float(r[-1])
    if how == "mean":
        return float(r.mean())
    return float(np.log(np.clip(r, 1e-300, None)).sum())


def load_prm(path: str | Path, *, trust_remote_code: bool = False, device: str = "auto",
             dtype: str | torch.dtype = "auto", revision: str | None = None) -> tuple[Any, Any]:
    """Load a PRM (token classification with 2 labels) and its tokenizer.

    ``trust_remote_code=True`` loads with ``AutoModel`` as the Qwen2.5-Math-PRM model card does
    (its ``Qwen2ForProcessRewardModel`` ships as custom code: only when you ask for it). Otherwise
    ``AutoModelForTokenClassification``; a checkpoint whose head weights do not load (for
    instance a custom-code PRM) is an error, never a silently random head.
    """
    from transformers import AutoModel, AutoModelForTokenClassification, AutoTokenizer, PretrainedConfig

    from ..engines.hf import resolve_device, resolve_dtype

    dev = resolve_device(device)
    kwargs: dict[str, Any] = dict(dtype=resolve_dtype(dtype, dev), revision=revision)
    if trust_remote_code:
        model = AutoModel.from_pretrained(str(path), trust_remote_code=True, **kwargs)
    else:
        raw, _ = PretrainedConfig.get_config_dict(str(path), revision=revision)  # read only, runs no code
        arch = ",".join(raw.get("architectures") or [])
        if raw.get("auto_map") and "ForTokenClassification" not in arch:
            raise ValueError(f"{path}: the PRM's architecture ({arch}) ships as custom code; pass "
                             "trust_remote_code=True if you trust it")
        model, info = AutoModelForTokenClassification.from_pretrained(str(path), output_loading_info=True, **kwargs)
        missing = list(info.get("missing_keys", []))
        if missing:
            raise ValueError(f"{path}: weights missing from the checkpoint (the head would be random): {missing[:5]}")
    tokenizer = AutoTokenizer.from_pretrained(str(path), revision=revision, trust_remote_code=trust_remote_code)
    return model.to(dev).eval(), tokenizer


@register(SignalInfo("prm", "II", "external", True,
                     "process reward model (Qwen2.5-Math-PRM usage): step rewards at <extra_0> separators "
                     "of the re-encoded prompt + prefix text, aggregated (min/last/product/mean)"))
class PRMSignal(TextSignal):
    """Scores prefixes with a process reward model (see the module docstring).

    ``prm``: a local path (or hub id) or an already loaded model; ``prm_tokenizer`` goes with a
    loaded model. ``tokenizer`` / ``decode``: the *generator's* tokenizer or decoder, to turn the
    prefix ids into text. ``step_sep``: "\\n\\n" (model card; use "\\n" for the toy task, one step
    per line). ``aggregate``: min (default) / last / product (sum of logs) / mean.
    ``include_prompt``: the user turn holds the problem text (``problem.prompt``, or the decoded
    prompt ids when no problem is given); False leaves it empty. ``partial_last``: keep (default)
    or drop the step the prefix boundary cut. A prefix with no step scores ``empty_score`` (0.5,
    uninformative). ``max_length``: error if a PRM input is longer (None: no check).
    """

    def __init__(self, prm: str | Path | Any = None, prm_tokenizer: Any = None, *, tokenizer: Any = None,
                 decode: Decode | None = None, step_sep: str = "\n\n", aggregate: str = "min",
                 include_prompt: bool = True, system: str | None = PRM_SYSTEM, step_token: str = PRM_STEP_TOKEN,
                 partial_last: str = "keep", empty_score: float = 0.5, batch_size: int = 8,
                 max_length: int | None = None, trust_remote_code: bool = False, device: str = "auto",
                 dtype: str | torch.dtype = "auto") -> None:
        super().__init__(tokenizer, decode)
        if prm is None:
            raise ValueError("PRMSignal needs prm= (a PRM path or a loaded token-classification model)")
        if isinstance(prm, (str, Path)):
            prm, loaded_tok = load_prm(prm, trust_remote_code=trust_remote_code, device=device, dtype=dtype)
            prm_tokenizer = prm_tokenizer or loaded_tok
        if prm_tokenizer is None:
            raise ValueError("pass prm_tokenizer together with an already loaded PRM model")
        aggregate_rewards([1.0], aggregate)
        prm_steps("", step_sep, partial_last)
        self.model = prm.eval()
        self.prm_tokenizer = prm_tokenizer
        ids = prm_tokenizer.encode(step_token, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"the PRM tokenizer must encode {step_token!r} as one token, got {ids}")
        self.step_token_id = int(ids[0])
        self.step_sep, self.aggregate, self.partial_last = step_sep, aggregate, partial_last
        self.include_prompt, self.system, self.step_token = include_prompt, system, step_token
        self.empty_score, self.batch_size, self.max_length = float(empty_score), batch_size, max_length

    def _query(self, path: ReasoningPath, problem: Problem | None) -> str:
        if not self.include_prompt:
            return ""
        if problem is not None:
            return problem.prompt
        return self._decode(list(path.prompt_ids))  # type: ignore[misc]  (texts() checked it exists)

    def conversations(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> list[tuple[str, int]]:
        """(PRM input text, number of steps) per prefix; 0 steps means no input."""
        out = []
        for path, text in zip(prefixes, self.texts(prefixes)):
            steps = prm_steps(text, self.step_sep, self.partial_last if not path.finished else "keep")
            if not steps:
                out.append(("", 0))
                continue
            out.append((prm_conversation(self.prm_tokenizer, self._query(path, problem), steps, self.system,
                                         self.step_token), len(steps)))
        return out

    @torch.no_grad()
    def rewards(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> list[np.ndarray]:
        """Step rewards of each prefix (empty array for a prefix without steps)."""
        convs = self.conversations(prefixes, problem)
        out: list[np.ndarray] = [np.zeros(0)] * len(convs)
        todo = [i for i, (_, n) in enumerate(convs) if n > 0]
        device = next(self.model.parameters()).device
        pad = self.prm_tokenizer.pad_token_id
        pad = int(pad) if pad is not None else 0
        for start in range(0, len(todo), self.batch_size):
            rows = todo[start:start + self.batch_size]
            seqs = [self.prm_tokenizer.encode(convs[i][0], add_special_tokens=False) for i in rows]
            for i, s in zip(rows, seqs):
                if self.max_length is not None and len(s) > self.max_length:
                    raise ValueError(f"prefix {i}: PRM input of {len(s)} tokens > max_length {self.max_length}")
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):  # right padding: real positions are unaffected (causal)
                ids[r, :len(s)] = torch.as_tensor(s)
                mask[r, :len(s)] = 1
            result = self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
            logits = result.logits if hasattr(result, "logits") else result[0]
            for r, i in enumerate(rows):
                sep = (ids[r] == self.step_token_id) & (mask[r] == 1)
                rew = step_rewards(logits[r].float().cpu(), sep)
                if rew.size != convs[i][1]:
                    raise ValueError(f"prefix {i}: found {rew.size} {self.step_token!r} positions for "
                                     f"{convs[i][1]} steps (does the prompt or the text contain it?)")
                out[i] = rew
        return out

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        return np.array([aggregate_rewards(r, self.aggregate) if r.size else self.empty_score
                         for r in self.rewards(prefixes, problem)], dtype=float)
