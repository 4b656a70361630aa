"""STOP (Type IV): a learned [STOP] token, a LoRA critique adapter and a head on a frozen LM.

Two-stage forward, as in the paper (§3.2, Eq. 4) and the authors' public code
(``STOP/src/modeling_harmony.py``, github.com/bijiaxihh/STOP):

1. the prefix (prompt + generated prefix) is encoded by the frozen base model with the
   adapter OFF, giving its KV cache — exactly the cache that generation produced;
2. M copies of one learned embedding are appended as ``inputs_embeds`` with the adapter ON,
   positions continuing after each row's true prefix length (left padding);
   the final-layer (post-norm) hidden state of the last [STOP] position goes through a
   linear head: score = sigmoid(head(h)) = predicted probability that the path succeeds.

The adapter rests disabled: the scorer can share its base model with a sampling engine,
which then sees the plain base model. Check crops the M appended positions off the cache,
so the cache is left exactly as Launch produced it and Resume is undisturbed.

Checkpoints (``save_pretrained`` / ``from_pretrained``): ``stop_config.json``, the adapter in
peft format under ``adapter/`` (loadable by plain ``PeftModel.from_pretrained``), and the
head + [STOP] embedding in ``stop_head.safetensors``. The authors' released layout
(``adapter/classifier/``, ``classifier_head.pth``, ``assess_token_embedding.pth``,
``assess_token_config.json``, a 2-way head) loads through ``from_authors_checkpoint``;
their ``.pth`` files are read with ``torch.load(weights_only=True)`` (no pickled code runs).

``StopConfig`` is defined in :mod:`stoplib.stage_configs`; the batching STOP shares with the
text verifier in :mod:`stoplib.prefix_scorer`.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

# Also importable from here: JsonConfig, ALL_LINEAR, PrefixScorer, left_pad, MIN_SHARED_TOKENS, common_prefix_len.
from .prefix_scorer import (MIN_SHARED_TOKENS, PrefixScorer, common_prefix_len, decoder_body,  # noqa: F401
                            left_pad, present_lora_targets)
from .stage_configs import ALL_LINEAR, JsonConfig, StopConfig  # noqa: F401

_PEFT_OF_BASE = "_stoplib_peft_model"  # a base model's PeftModel, shared by every STOP module on it
FORMAT_VERSION = 1


class StopScorer(PrefixScorer):
    """The STOP module on a (frozen) Hugging Face causal LM.

    ``scorer(input_ids, attention_mask)`` returns logits (B,) for left-padded prefixes;
    ``score_cache(cache, attention_mask)`` scores prefixes already in a KV cache (Check).
    """

    def __init__(self, base_model: nn.Module, tokenizer: Any, config: StopConfig = StopConfig()) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        if config.token not in tokenizer.get_vocab():
            tokenizer.add_tokens([config.token])
        self.token_id = tokenizer.convert_tokens_to_ids(config.token)
        for p in base_model.parameters():
            p.requires_grad_(False)
        embeddings = base_model.get_input_embeddings().weight
        hidden = embeddings.shape[1]
        if config.embedding_init == "vocab" and self.token_id < embeddings.shape[0]:
            init = embeddings[self.token_id].detach().clone()  # a spare row: start from it, as the authors do
        elif config.embedding_init == "random":
            init = (torch.randn(hidden, device=embeddings.device) * embeddings.detach().float().std()).to(embeddings.dtype)
        else:  # "mean", or "vocab" with the [STOP] embedding outside the vocabulary
            init = embeddings.detach().float().mean(0).to(embeddings.dtype)
        self.stop_embedding = nn.Parameter(init, requires_grad=config.use_adapter)
        self.head = nn.Linear(hidden, 1, dtype=embeddings.dtype, device=embeddings.device)
        self._adapter_is_on = False
        self.adapter_name = ""
        if config.use_adapter:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                target_modules=present_lora_targets(base_model, config.target_modules), bias="none",
            )
            shared = base_model.__dict__.get(_PEFT_OF_BASE)
            if shared is None:  # the first STOP module on this base model
                self.adapter_name = "default"
                self.model = get_peft_model(base_model, lora)
                base_model.__dict__[_PEFT_OF_BASE] = self.model  # (not a registered submodule)
            else:  # another STOP module on the same weights: one more named adapter, no copy of the model
                self.adapter_name = f"stop{len(shared.peft_config)}"
                shared.add_adapter(self.adapter_name, lora)
                self.model = shared
            marker = f".{self.adapter_name}."
            self._lora_params = [p for n, p in self.model.named_parameters() if "lora_" in n and marker in n]
            self._set_adapter(False)
        else:
            self.model = base_model
            self._lora_params = []
        self.eval()  # deterministic scoring by default; training calls .train()

    # ------------------------------------------------------------------ adapter switch
    def _set_adapter(self, on: bool) -> None:
        self._adapter_is_on = on
        if not self.config.use_adapter:
            return
        if on:
            self.model.base_model.set_adapter(self.adapter_name)
            self.model.base_model.enable_adapter_layers()
        else:
            self.model.base_model.disable_adapter_layers()
        for p in self._lora_params:  # peft toggles requires_grad; keep the adapter trainable
            p.requires_grad_(True)

    @contextmanager
    def _adapter(self, on: bool) -> Iterator[None]:
        previous = self._adapter_is_on
        if on != previous:
            self._set_adapter(on)
        try:
            yield
        finally:
            if on != previous:
                self._set_adapter(previous)

    def adapter_on(self):
        """Context in which the critique adapter is on (it rests disabled).

        Training wraps forward *and* backward in it, so that the LoRA weights still require
        gradients at backward time; stage 1 switches it off inside regardless.
        """
        return self._adapter(True)

    @property
    def base_model(self) -> nn.Module:
        return self.model.get_base_model() if self.config.use_adapter else self.model

    def trainable_parameters(self) -> list[nn.Parameter]:
        params = list(self.head.parameters()) + self._lora_params
        return params + [self.stop_embedding] if self.stop_embedding.requires_grad else params

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def encode_prefix(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """Stage 1: KV cache of left-padded prefixes (B, S) from the base model, adapter off."""
        with self._adapter(False):
            out = decoder_body(self.model)(
                input_ids=input_ids, attention_mask=attention_mask,
                position_ids=(attention_mask.cumsum(-1) - 1).clamp(min=0), use_cache=True,
            )
        return out.past_key_values

    @torch.no_grad()
    def extend_prefix(self, cache: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        """Stage 1 continued: append ``input_ids`` (B, T) to a prefix cache, adapter off.

        ``attention_mask`` (B, S) covers the cached positions and the new ones (its last T
        columns); positions follow each row's true length.
        """
        width = input_ids.shape[1]
        positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -width:]
        with self._adapter(False):
            out = decoder_body(self.model)(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                                       past_key_values=cache, use_cache=True)
        return out.past_key_values

    def encode_shared(self, ids: torch.Tensor) -> Any:
        return self.encode_prefix(ids, torch.ones_like(ids))

    def logits_on_cache(self, cache: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.score_cache(self.extend_prefix(cache, ids, mask), mask, restore=False)

    def score_cache(self, cache: Any, attention_mask: torch.Tensor, *, restore: bool = True) -> torch.Tensor:
        """Stage 2: logits (B,) for prefixes held in ``cache`` with mask (B, S).

        Appends M [STOP] positions with the adapter on, reads the last one, then crops them
        off again (``restore``) so the cache is exactly as before.
        """
        m = self.config.num_tokens
        batch = attention_mask.shape[0]
        embeds = self.stop_embedding.to(self.head.weight.dtype).expand(batch, m, -1)
        ones = torch.ones((batch, m), dtype=attention_mask.dtype, device=attention_mask.device)
        positions = attention_mask.sum(-1, keepdim=True) + torch.arange(m, device=attention_mask.device)
        try:
            with self.adapter_on():
                out = decoder_body(self.model)(
                    inputs_embeds=embeds, attention_mask=torch.cat([attention_mask, ones], dim=1),
                    position_ids=positions, past_key_values=cache, use_cache=True,
                )
        finally:
            if restore:
                cache.crop(-m)
        return self.head(out.last_hidden_state[:, -1, :]).squeeze(-1).float()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Both stages on left-padded prefixes (B, S): logits (B,)."""
        cache = self.encode_prefix(input_ids, attention_mask)
        return self.score_cache(cache, attention_mask, restore=False)

    # ------------------------------------------------------------------ checkpoints
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the checkpoint directory (see the module docstring)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = self.config.to_dict() | {"format_version": FORMAT_VERSION, "hidden_size": self.head.in_features}
        (directory / "stop_config.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        tensors = {"head.weight": self.head.weight.detach().contiguous(), "head.bias": self.head.bias.detach(),
                   "stop_embedding": self.stop_embedding.detach().contiguous()}
        save_file({k: v.cpu() for k, v in tensors.items()}, str(directory / "stop_head.safetensors"))
        if self.config.use_adapter:
            adapter_dir = directory / "adapter"
            self.model.save_pretrained(str(adapter_dir), selected_adapters=[self.adapter_name],
                                       save_embedding_layers=False)
            if self.adapter_name != "default":  # peft saves other names in a subdirectory: keep one layout
                for f in (adapter_dir / self.adapter_name).iterdir():
                    f.replace(adapter_dir / f.name)
                (adapter_dir / self.adapter_name).rmdir()
            _sort_target_modules(adapter_dir / "adapter_config.json")
        return directory

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, base_model: nn.Module | None = None, tokenizer: Any = None, **load_kwargs: Any
    ) -> "StopScorer":
        """Load a checkpoint; the base model is loaded from its recorded id unless given."""
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"STOP checkpoint {directory} does not exist (or is not a directory)")
        config_path = directory / "stop_config.json"
        if not config_path.exists():
            if (directory / "assess_token_config.json").exists():
                return from_authors_checkpoint(directory, base_model, tokenizer, **load_kwargs)
            raise FileNotFoundError(f"{directory} has no stop_config.json (not a STOP checkpoint)")
        config = _checkpoint_config(config_path)
        base_model, tokenizer = _base(config, base_model, tokenizer, **load_kwargs)
        return cls(base_model, tokenizer, config).load_weights(directory)

    def load_weights(self, directory: str | Path) -> "StopScorer":
        """Load head, [STOP] embedding and adapter weights of a checkpoint into this scorer."""
        from safetensors.torch import load_file

        directory = Path(directory)
        path = directory / "stop_head.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"STOP checkpoint {directory}: {path.name} is missing")
        try:
            state = load_file(str(path))
        except Exception as err:  # safetensors' own error type for a truncated or corrupt file
            raise ValueError(f"{path} is corrupt or truncated ({err}); restore or retrain the checkpoint") from err
        missing = {"head.weight", "head.bias", "stop_embedding"} - set(state)
        if missing:
            raise ValueError(f"{path} lacks the tensors {sorted(missing)} (not a STOP head file)")
        _check_shape(state["head.weight"], self.head.weight, path)
        _check_shape(state["stop_embedding"], self.stop_embedding, path, "[STOP] embedding")
        with torch.no_grad():
            self.head.weight.copy_(state["head.weight"])
            self.head.bias.copy_(state["head.bias"])
            self.stop_embedding.copy_(state["stop_embedding"])
        if self.config.use_adapter:
            _load_adapter(self, directory / "adapter")
        return self.eval()


def _sort_target_modules(config_path: Path) -> None:
    """peft writes ``target_modules`` in set order, which changes from process to process: sorted,
    the same training gives the same checkpoint bytes in every process."""
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def _checkpoint_config(path: Path) -> StopConfig:
    """The StopConfig of a checkpoint's ``stop_config.json``; errors name the file."""
    from .store import read_text

    try:
        data = json.loads(read_text(path, "STOP checkpoint config"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore or retrain the checkpoint") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    try:
        return StopConfig.from_dict(data)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: {err}") from None


def _load_adapter(scorer: StopScorer, adapter_dir: Path) -> None:
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    weights = [adapter_dir / name for name in ("adapter_model.safetensors", "adapter_model.bin")]
    if not any(p.is_file() for p in weights):
        raise FileNotFoundError(f"STOP checkpoint {adapter_dir.parent}: the adapter ({weights[0]}) is missing; "
                                "the checkpoint's stop_config.json says use_adapter=true")
    try:
        state = load_peft_weights(str(adapter_dir), device=str(scorer.device))
        result = set_peft_model_state_dict(scorer.model, state, adapter_name=scorer.adapter_name)
    except Exception as err:  # a truncated file, or a rank / layer that does not fit
        raise ValueError(f"{adapter_dir}: the adapter weights cannot be loaded into this model "
                         f"({type(err).__name__}: {str(err)[:300]}); restore or retrain the checkpoint") from err
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"{adapter_dir}: adapter weights that fit no layer: {result.unexpected_keys[:5]}")
    scorer._set_adapter(False)


def _check_shape(loaded: torch.Tensor, expected: torch.Tensor, where: Path, what: str = "head") -> None:
    if tuple(loaded.shape) != tuple(expected.shape):
        raise ValueError(f"{where}: {what} shape {tuple(loaded.shape)} does not fit the base model {tuple(expected.shape)}")


def _base(config: StopConfig, base_model: Any, tokenizer: Any, **load_kwargs: Any) -> tuple[Any, Any]:
    if base_model is not None and tokenizer is not None:
        return base_model, tokenizer
    if not config.base_model:
        raise ValueError("the checkpoint records no base model; pass base_model and tokenizer")
    from .engines.hf import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(config.base_model, revision=config.base_revision, **load_kwargs)
    return base_model or model, tokenizer or tok


def from_authors_checkpoint(
    directory: str | Path, base_model: nn.Module | None = None, tokenizer: Any = None, **load_kwargs: Any
) -> StopScorer:
    """Load the authors' released layout (their ``finetuning_harmony.py`` output) into a ``StopScorer``.

    ``assess_token_config.json`` gives the token ("[ASSESS]") and M; the adapter is the peft
    directory ``adapter/classifier/``; ``classifier_head.pth`` is a 2-way head, converted
    exactly to our scalar head (logit = z1 - z0, so sigmoid = softmax[1]).
    """
    directory = Path(directory)
    adapter_dir = directory / "adapter" / "classifier"
    if not adapter_dir.exists():
        adapter_dir = directory / "adapter"
    try:
        meta = json.loads((directory / "assess_token_config.json").read_text())
        adapter_meta = json.loads((adapter_dir / "adapter_config.json").read_text())
        config = StopConfig(
            token=meta.get("assess_token", "[ASSESS]"), num_tokens=int(meta.get("num_assess_tokens", 4)),
            lora_r=int(adapter_meta["r"]), lora_alpha=int(adapter_meta["lora_alpha"]),
            lora_dropout=float(adapter_meta.get("lora_dropout", 0.0)),
            target_modules=tuple(adapter_meta["target_modules"]),
            base_model=str(adapter_meta.get("base_model_name_or_path") or ""),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{directory}: not a readable checkpoint of the authors' layout "
                         f"(assess_token_config.json, adapter/adapter_config.json): {type(err).__name__}: {err}") from err
    base_model, tokenizer = _base(config, base_model, tokenizer, **load_kwargs)
    scorer = StopScorer(base_model, tokenizer, config)
    head = torch.load(directory / "classifier_head.pth", map_location="cpu", weights_only=True)
    weight, bias = head["weight"], head["bias"]
    if weight.shape[0] != 2:
        raise ValueError(f"{directory / 'classifier_head.pth'}: expected a 2-way head, got {tuple(weight.shape)}")
    emb_path = directory / meta.get("embedding_path", "assess_token_embedding.pth")
    if not emb_path.is_absolute() and not emb_path.exists():
        emb_path = directory / "assess_token_embedding.pth"
    emb = torch.load(emb_path, map_location="cpu", weights_only=True)
    vector = emb["input_embedding"] if isinstance(emb, dict) else emb
    with torch.no_grad():
        scorer.head.weight.copy_((weight[1] - weight[0]).unsqueeze(0))
        scorer.head.bias.copy_((bias[1] - bias[0]).reshape(1))
        scorer.stop_embedding.copy_(vector.reshape(-1))
    _load_adapter(scorer, adapter_dir)
    return scorer.eval()
