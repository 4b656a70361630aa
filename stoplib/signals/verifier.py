"""Type II-retrain analogue: an external text verifier trained on STOP's Monte Carlo labels.

The paper's "Type II-retrain" baseline (App. D, Table 13): a separate model, trained on the same
soft labels as STOP, reads only the decoded text of prompt + prefix and re-encodes it with its
own tokenizer and weights (no access to the generator's KV cache or hidden states). See
:class:`TextVerifier`.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..engines.base import ReasoningPath
from ..label_records import LabelRecord
from ..prefix_scorer import PrefixScorer, decoder_body, present_lora_targets
from ..problems import Problem
from ..stage_configs import ALL_LINEAR, JsonConfig
from .base import SignalInfo, register
from .type1 import Decode, TextSignal, text_decoder


@dataclass(frozen=True)
class VerifierConfig(JsonConfig):
    """A text verifier: its own copy of a (small) LM, a linear head on the last token.

    ``mode``: "lora" (default: LoRA on every linear layer of the verifier's copy + head; the
    copy's weights otherwise frozen), "full" (every weight of the copy trains) or "head" (linear
    probe on the frozen copy). ``prepend_bos``: start every input with the verifier tokenizer's
    BOS token (when it has one).
    """

    mode: str = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ALL_LINEAR
    prepend_bos: bool = True
    base_model: str = ""
    base_revision: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("lora", "full", "head"):
            raise ValueError(f"mode must be 'lora', 'full' or 'head', got {self.mode!r}")
        if self.mode == "lora" and self.lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {self.lora_r}")


class TextVerifier(PrefixScorer):
    """An external verifier: re-tokenizes the decoded prompt + prefix text with its own tokenizer,
    encodes it with its own model (separate weights, full re-encoding, no access to the
    generator's cache), and reads a linear head on the final hidden state of the last token:
    ``score = sigmoid(head(h_last))`` = predicted probability that the path succeeds.

    Default model: a separately loaded copy of whatever LM path you give
    (:meth:`from_base`); for the toy organism, the organism's own weights loaded a second time.
    (Constructing it on a model object that an engine also uses would put the LoRA layers into
    the engine's model: pass a separate copy.)
    Trained with soft BCE on the label JSONL of STOP (:func:`stoplib.train.train_verifier`, which runs
    ``stoplib.train.train_stop`` on re-tokenized records: same loop, validation metrics, best
    epoch by validation MSE, resumable epochs). The interface ``train_stop`` relies on
    (``forward``, ``score``, ``trainable_parameters``, ``adapter_on``, ``save_pretrained``,
    ``load_weights``, ``pad_id``, ``device``) mirrors ``StopScorer``.

    Checkpoint directory: ``verifier_config.json``, ``verifier_head.safetensors`` and either
    ``adapter/`` (peft format; "lora"), ``model.safetensors`` (all weights; "full") or nothing
    more ("head").
    """

    def __init__(self, base_model: nn.Module, tokenizer: Any, config: VerifierConfig = VerifierConfig()) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        embeddings = base_model.get_input_embeddings().weight
        self.head = nn.Linear(embeddings.shape[1], 1, dtype=embeddings.dtype, device=embeddings.device)
        if config.mode == "lora":
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                              target_modules=present_lora_targets(base_model, config.target_modules), bias="none")
            for p in base_model.parameters():
                p.requires_grad_(False)
            self.model = get_peft_model(base_model, lora)
            self._body_params = [p for n, p in self.model.named_parameters() if "lora_" in n]
        else:
            self.model = base_model
            for p in base_model.parameters():
                p.requires_grad_(config.mode == "full")
            self._body_params = list(base_model.parameters()) if config.mode == "full" else []
        self.eval()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(cls, model: str | Path, config: VerifierConfig | None = None, **load_kwargs: Any) -> "TextVerifier":
        """A verifier on a fresh, separately loaded copy of the LM at ``model`` (path or hub id)."""
        from ..engines.hf import load_model_and_tokenizer

        config = config or VerifierConfig()
        if not config.base_model:
            config = replace(config, base_model=str(model))
        lm, tok = load_model_and_tokenizer(model, revision=config.base_revision, **load_kwargs)
        return cls(lm, tok, config)

    # ------------------------------------------------------------------ text -> ids
    def encode_text(self, text: str) -> list[int]:
        """Verifier token ids of a text (its own tokenizer; BOS first if ``prepend_bos``)."""
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if self.config.prepend_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [int(bos)] + ids
        if not ids:
            ids = [self.pad_id]
        return ids

    # ------------------------------------------------------------------ forward
    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters()) + self._body_params

    def adapter_on(self):
        """No-op (the verifier's adapter is always on); present for ``train_stop``."""
        return nullcontext()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (B,) for left-padded verifier ids (B, S): head on the last position's final state."""
        out = decoder_body(self.model)(input_ids=input_ids, attention_mask=attention_mask,
                                   position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0), use_cache=False)
        return self.head(out.last_hidden_state[:, -1, :]).squeeze(-1).float()

    def encode_shared(self, ids: torch.Tensor) -> Any:
        return decoder_body(self.model)(input_ids=ids, use_cache=True).past_key_values

    def logits_on_cache(self, cache: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        out = decoder_body(self.model)(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache,
                                   use_cache=True)
        return self.head(out.last_hidden_state[:, -1, :]).squeeze(-1).float()

    def score_texts(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities (N,) for texts."""
        return self.score([self.encode_text(t) for t in texts], batch_size).cpu().numpy().astype(float)

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file, save_model

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = self.config.to_dict() | {"format_version": 1, "hidden_size": self.head.in_features}
        (directory / "verifier_config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        save_file({"head.weight": self.head.weight.detach().cpu().contiguous(),
                   "head.bias": self.head.bias.detach().cpu().contiguous()}, str(directory / "verifier_head.safetensors"))
        if self.config.mode == "lora":
            self.model.save_pretrained(str(directory / "adapter"), save_embedding_layers=False)
        elif self.config.mode == "full":
            save_model(self.model, str(directory / "model.safetensors"))
        return directory

    def load_weights(self, directory: str | Path) -> "TextVerifier":
        from safetensors.torch import load_file, load_model

        directory = Path(directory)
        state = load_file(str(directory / "verifier_head.safetensors"))
        if tuple(state["head.weight"].shape) != tuple(self.head.weight.shape):
            raise ValueError(f"{directory}: head shape {tuple(state['head.weight'].shape)} does not fit the model "
                             f"{tuple(self.head.weight.shape)}")
        with torch.no_grad():
            self.head.weight.copy_(state["head.weight"])
            self.head.bias.copy_(state["head.bias"])
        if self.config.mode == "lora":
            from peft import set_peft_model_state_dict
            from peft.utils import load_peft_weights

            result = set_peft_model_state_dict(self.model, load_peft_weights(str(directory / "adapter"),
                                                                             device=str(self.device)))
            if getattr(result, "unexpected_keys", None):
                raise ValueError(f"{directory}: adapter weights that fit no layer: {result.unexpected_keys[:5]}")
        elif self.config.mode == "full":
            load_model(self.model, str(directory / "model.safetensors"), device=str(self.device))
        return self.eval()

    @classmethod
    def from_pretrained(cls, directory: str | Path, base_model: nn.Module | None = None, tokenizer: Any = None,
                        **load_kwargs: Any) -> "TextVerifier":
        """Load a checkpoint; the base LM is loaded (a fresh copy) from its recorded path unless given."""
        directory = Path(directory)
        path = directory / "verifier_config.json"
        if not path.exists():
            raise FileNotFoundError(f"{directory} has no verifier_config.json (not a verifier checkpoint)")
        config = VerifierConfig.from_dict(json.loads(path.read_text()))
        if base_model is None or tokenizer is None:
            if not config.base_model:
                raise ValueError(f"{path}: no base model recorded; pass base_model and tokenizer")
            from ..engines.hf import load_model_and_tokenizer

            lm, tok = load_model_and_tokenizer(config.base_model, revision=config.base_revision, **load_kwargs)
            base_model, tokenizer = base_model or lm, tokenizer or tok
        return cls(base_model, tokenizer, config).load_weights(directory)


def retokenize_records(records: Sequence[Any], decode: Decode, verifier: TextVerifier) -> list[Any]:
    """Label records with the generator's ``prefix_token_ids`` (prompt + prefix) turned into the
    verifier's ids: decode with the generator's tokenizer, encode with the verifier's."""
    return [LabelRecord(tuple(verifier.encode_text(decode(list(r.prefix_token_ids)))), r.soft_label, r.hard_label,
                        r.problem_id) for r in records]


@register(SignalInfo("verifier", "II", "external", True,
                     "external text verifier trained on STOP's MC labels (Type II-retrain analogue): its own "
                     "model re-encodes the decoded prompt + prefix text, head on the last token"))
class VerifierSignal(TextSignal):
    """Scores prefixes with a trained :class:`TextVerifier` (``verifier=`` or ``checkpoint=``).

    ``tokenizer`` / ``decode``: the generator's, to decode prompt + prefix ids into text (the same
    decoding the training records went through). Score = the verifier's probability.
    """

    def __init__(self, verifier: TextVerifier | None = None, checkpoint: str | Path | None = None, *,
                 tokenizer: Any = None, decode: Decode | None = None, batch_size: int = 32,
                 **load_kwargs: Any) -> None:
        super().__init__(tokenizer, decode)
        if verifier is None:
            if checkpoint is None:
                raise ValueError("VerifierSignal needs verifier= or checkpoint=")
            verifier = TextVerifier.from_pretrained(checkpoint, **load_kwargs)
        self.verifier = verifier
        self.batch_size = batch_size

    def texts_with_prompt(self, prefixes: Sequence[ReasoningPath]) -> list[str]:
        if self._decode is None:
            raise ValueError("signal 'verifier' reads text: construct it with tokenizer= or decode=")
        return [self._decode(list(p.prompt_ids) + list(p.token_ids)) for p in prefixes]

    def score(self, prefixes: Sequence[ReasoningPath], problem: Problem | None = None) -> np.ndarray:
        if not prefixes:
            return np.zeros(0)
        return self.verifier.score_texts(self.texts_with_prompt(prefixes), self.batch_size)
