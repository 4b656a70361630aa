"""STOP's Check served inside vLLM, without forking it: an out-of-tree model (vLLM 0.32).

The authors serve STOP on a patched vLLM (their `inference.py`). Here the same behaviour comes from
vLLM's public extension points only:

- ``register()`` (the ``vllm.general_plugins`` entry point, or called in-process) registers
  ``StopLlamaForCausalLM`` / ``StopQwen2ForCausalLM`` with ``ModelRegistry.register_model``. They
  are the stock vLLM Llama / Qwen2 models plus a STOP checkpoint (``StopScorer.save_pretrained``
  layout), selected with ``hf_overrides={"architectures": [...], "stop_checkpoint": dir,
  "stop_token_id": V}``; ``VLLMEngine(..., stop_checkpoint=dir)`` does all of it.
- The [STOP] token is a reserved id V (the model's vocabulary size: outside the embedding
  table, so no real token can be confused with it, and the base model can never sample it).
  ``forward`` embeds position t with the learned [STOP] vector where ``input_ids[t] == V``, and
  every LoRA-targeted linear layer (q/k/v inside ``qkv_proj``, ``o_proj``, gate/up inside
  ``gate_up_proj``, ``down_proj``) adds ``B A x * alpha / r`` on those rows only (a per-token mask;
  other rows get exactly zero added). A forward without any [STOP] token skips the LoRA work, so
  generation is the plain base model, bit for bit and at its speed.
- The head's output leaves through the ordinary generate API: ``forward`` returns the final
  hidden states with one extra column, the [STOP] flag; ``compute_logits`` (which receives the
  rows vLLM samples from, i.e. each request's last position) turns a flagged row into logits
  ``[0, z, -inf, ...]`` where ``z = head(h)``. Under ``logprobs_mode="raw_logprobs"`` the request's
  log-probabilities of tokens 0 and 1 are ``log(1 - sigmoid(z))`` and ``log(sigmoid(z))``.

So Check is a plain request ``prompt + prefix + [V] * M`` with ``max_tokens=1, logprobs=2``: the
prompt + prefix blocks are served by the prefix cache that Launch filled (computed without the
adapter, as in training), only the M [STOP] positions (and the last partial block) are encoded,
and the blocks holding [STOP] ids are hashed with those ids, so Resume requests never reuse them.
The engine side is ``VLLMEngine.stop_score`` / ``stop_scores``; the pipeline's signal over them is
``stoplib.signals.type4.ServedStopSignal``.

Limits (all checked, with an error): tensor parallel size 1, pipeline parallel size 1, no
quantization, Llama/Qwen2-style layers (``qkv_proj``/``o_proj``/``gate_up_proj``/``down_proj``).
The model runs eagerly: the per-forward [STOP] mask is module state that torch.compile must not
bake in, so ``VLLMEngine`` sets ``enforce_eager=True`` (CUDA graphs untested).
The reserved id is out of the tokenizer's range, so the engine starts vLLM with
``skip_tokenizer_init=True`` (vLLM's prompt validation needs a tokenizer; stoplib works on ids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

STOP_ARCHS = {
    "LlamaForCausalLM": "StopLlamaForCausalLM",
    "Qwen2ForCausalLM": "StopQwen2ForCausalLM",
}
_MODULE = "stoplib.engines.vllm_stop"


def register() -> None:
    """Register the STOP serving models with vLLM (the ``vllm.general_plugins`` entry point)."""
    from vllm import ModelRegistry

    for arch in STOP_ARCHS.values():
        if arch not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(arch, f"{_MODULE}:{arch}")


def plugin_installed() -> bool:
    """Whether ``register`` is installed as a ``vllm.general_plugins`` entry point (needed when
    vLLM runs its engine in other processes, its default)."""
    from importlib.metadata import entry_points

    return any(ep.value == f"{_MODULE}:register" for ep in entry_points(group="vllm.general_plugins"))


def read_stop_checkpoint(directory: str | Path) -> dict[str, Any]:
    """``stop_config.json`` of a checkpoint saved by ``StopScorer.save_pretrained``."""
    directory = Path(directory)
    path = directory / "stop_config.json"
    if not path.exists():
        raise FileNotFoundError(f"{directory} has no stop_config.json (save it with StopScorer.save_pretrained; "
                                "authors' checkpoints: load with StopScorer.from_pretrained and save again)")
    return json.loads(path.read_text())


class _StopState:
    """Per-forward [STOP] mask (num_tokens, 1) shared by the wrapped linear layers."""

    mask: torch.Tensor | None = None


def _lora_pairs(directory: Path) -> tuple[dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]], float]:
    """LoRA (A (r, in), B (out, r)) per (layer index, module name) and the scaling alpha / r."""
    from safetensors.torch import load_file

    adapter = directory / "adapter"
    meta = json.loads((adapter / "adapter_config.json").read_text())
    if meta.get("use_rslora") or meta.get("use_dora"):
        raise ValueError(f"{adapter}: rsLoRA / DoRA adapters are not supported by the vLLM STOP model")
    scaling = float(meta["lora_alpha"]) / float(meta["r"])
    files = [adapter / "adapter_model.safetensors"]
    if not files[0].exists():
        raise FileNotFoundError(f"{files[0]} not found (adapters are read from safetensors only)")
    state = load_file(str(files[0]))
    pairs: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if "lora_A" not in parts and "lora_B" not in parts:
            continue
        try:
            layer = int(parts[parts.index("layers") + 1])
        except (ValueError, IndexError):
            raise ValueError(f"{files[0]}: LoRA weight {key!r} is not inside a decoder layer") from None
        which = "A" if "lora_A" in parts else "B"
        module = parts[parts.index(f"lora_{which}") - 1]
        pairs.setdefault((layer, module), {})[which] = tensor
    out = {}
    for key, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise ValueError(f"{files[0]}: layer {key[0]} {key[1]} has only lora_{''.join(ab)}")
        out[key] = (ab["A"], ab["B"])
    return out, scaling


def _wrap_linear(module: nn.Module, slices: list[tuple[str, int, int]], state: _StopState, owner: nn.Module,
                 layer: int) -> None:
    """Make ``module`` add its LoRA deltas on [STOP] rows. ``slices``: (name, start, end) of the
    output columns each sub-projection owns (q/k/v inside qkv_proj, gate/up inside gate_up_proj)."""
    original = module.forward

    def forward(x: Any, *args: Any, **kwargs: Any):
        out = original(x, *args, **kwargs)
        mask = state.mask
        if mask is None:
            return out
        if not isinstance(x, torch.Tensor):
            raise TypeError("the vLLM STOP model supports unquantized linear layers only")
        y, bias = out if isinstance(out, tuple) else (out, None)
        for name, start, end in slices:
            a = getattr(owner, f"lora_{layer}_{name}_A", None)
            if a is None:
                continue
            b = getattr(owner, f"lora_{layer}_{name}_B")
            delta = (x @ a.t()) @ b.t()
            y[:, start:end] += delta * (mask * owner.stop_lora_scaling).to(delta.dtype)
        return (y, bias) if isinstance(out, tuple) else y

    module.forward = forward


class _StopMixin:
    """STOP on top of a stock vLLM decoder (see the module docstring). Mixed in first."""

    def _init_stop(self, vllm_config: Any) -> None:
        from vllm.distributed import get_pp_group, get_tensor_model_parallel_world_size

        config = vllm_config.model_config.hf_config
        directory = getattr(config, "stop_checkpoint", None)
        if not directory:
            raise ValueError("the STOP model needs hf_overrides={'stop_checkpoint': dir, 'stop_token_id': id}")
        if get_tensor_model_parallel_world_size() != 1 or get_pp_group().world_size != 1:
            raise ValueError("the vLLM STOP model supports tensor_parallel_size=1 and pipeline_parallel_size=1 only")
        if vllm_config.quant_config is not None:
            raise ValueError("the vLLM STOP model does not support quantized models")
        self.stop_dir = Path(directory)
        self.stop_config = read_stop_checkpoint(self.stop_dir)
        self.stop_token_id = int(getattr(config, "stop_token_id", config.vocab_size))
        hidden = config.hidden_size
        self.stop_state = _StopState()
        self.register_buffer("stop_embedding", torch.zeros(hidden), persistent=False)
        self.register_buffer("stop_head_weight", torch.zeros(1, hidden, dtype=torch.float32), persistent=False)
        self.register_buffer("stop_head_bias", torch.zeros(1, dtype=torch.float32), persistent=False)
        self.stop_lora_scaling = 0.0
        if self.stop_config.get("use_adapter", True):
            pairs, self.stop_lora_scaling = _lora_pairs(self.stop_dir)
            self._register_lora(pairs)

    def _register_lora(self, pairs: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]]) -> None:
        layers = self.model.layers
        for (layer, name), (a, b) in pairs.items():
            if layer >= len(layers):
                raise ValueError(f"{self.stop_dir}: LoRA for layer {layer}, the model has {len(layers)} layers")
            for which, tensor in (("A", a), ("B", b)):
                key = f"lora_{layer}_{name}_{which}"
                self.register_buffer(key, torch.zeros(tuple(tensor.shape), dtype=self.stop_embedding.dtype), persistent=False)
        self._stop_lora_cpu = pairs  # copied to the model's device and dtype in load_weights
        targets = {name for _, name in pairs}
        unknown = targets - {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
        if unknown:
            raise ValueError(f"{self.stop_dir}: LoRA targets {sorted(unknown)} are not supported by the vLLM STOP model")
        for i, block in enumerate(layers):
            attn, mlp = block.self_attn, block.mlp
            q, kv = attn.q_size, attn.kv_size
            inter = mlp.gate_up_proj.output_size_per_partition // 2
            spec = [
                (attn.qkv_proj, [("q_proj", 0, q), ("k_proj", q, q + kv), ("v_proj", q + kv, q + 2 * kv)]),
                (attn.o_proj, [("o_proj", 0, attn.o_proj.output_size_per_partition)]),
                (mlp.gate_up_proj, [("gate_proj", 0, inter), ("up_proj", inter, 2 * inter)]),
                (mlp.down_proj, [("down_proj", 0, mlp.down_proj.output_size_per_partition)]),
            ]
            for module, slices in spec:
                mine = [s for s in slices if s[0] in targets and (i, s[0]) in pairs]
                if mine:
                    _wrap_linear(module, mine, self.stop_state, self, i)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        from safetensors.torch import load_file

        loaded = super().load_weights(weights)
        state = load_file(str(self.stop_dir / "stop_head.safetensors"))
        device = self.stop_embedding.device
        dtype = next(p for p in self.parameters()).dtype
        if tuple(state["head.weight"].shape) != tuple(self.stop_head_weight.shape):
            raise ValueError(f"{self.stop_dir}: head {tuple(state['head.weight'].shape)} does not fit hidden size "
                             f"{self.stop_head_weight.shape[1]}")
        with torch.no_grad():
            self.stop_embedding = state["stop_embedding"].reshape(-1).to(device=device, dtype=dtype)
            self.stop_head_weight = state["head.weight"].to(device=device, dtype=torch.float32)
            self.stop_head_bias = state["head.bias"].reshape(1).to(device=device, dtype=torch.float32)
            for (layer, name), (a, b) in getattr(self, "_stop_lora_cpu", {}).items():
                setattr(self, f"lora_{layer}_{name}_A", a.to(device=device, dtype=dtype))
                setattr(self, f"lora_{layer}_{name}_B", b.to(device=device, dtype=dtype))
        self._stop_lora_cpu = {}
        return loaded

    def forward(self, input_ids: torch.Tensor | None, positions: torch.Tensor, intermediate_tensors: Any = None,
                inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if input_ids is None:
            raise ValueError("the vLLM STOP model needs input_ids (prompt embeddings are not supported)")
        is_stop = input_ids == self.stop_token_id
        any_stop = bool(is_stop.any())  # one host sync per step; the model runs eagerly anyway
        if any_stop:
            embeds = self.model.embed_input_ids(torch.where(is_stop, torch.zeros_like(input_ids), input_ids))
            embeds = torch.where(is_stop.unsqueeze(-1), self.stop_embedding.to(embeds.dtype), embeds)
        else:  # plain generation: exactly the base model, no LoRA work
            embeds = self.model.embed_input_ids(input_ids)
        self.stop_state.mask = is_stop.unsqueeze(-1) if any_stop and self.stop_lora_scaling else None
        try:
            hidden = self.model(None, positions, intermediate_tensors, embeds)
        finally:
            self.stop_state.mask = None
        return torch.cat([hidden, is_stop.unsqueeze(-1).to(hidden.dtype)], dim=-1)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        hidden, flag = hidden_states[:, :-1], hidden_states[:, -1:]
        logits = super().compute_logits(hidden)
        if logits is None:
            return None
        z = hidden.float() @ self.stop_head_weight.t() + self.stop_head_bias  # (R, 1)
        stop_row = torch.full_like(logits, float("-inf"))
        stop_row[:, :1] = 0.0
        stop_row[:, 1:2] = z.to(logits.dtype)
        return torch.where(flag > 0.5, stop_row, logits)

    def compute_logits_local(self, hidden_states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the vLLM STOP model does not support local-argmax sharding")


def _make(base_name: str, module_name: str) -> type:
    import importlib

    base = getattr(importlib.import_module(f"vllm.model_executor.models.{module_name}"), base_name)

    class StopModel(_StopMixin, base):  # type: ignore[misc, valid-type]
        def __init__(self, *, vllm_config: Any, prefix: str = "", **kwargs: Any) -> None:
            super().__init__(vllm_config=vllm_config, prefix=prefix, **kwargs)
            self._init_stop(vllm_config)

    StopModel.__name__ = StopModel.__qualname__ = STOP_ARCHS[base_name]
    StopModel.__module__ = __name__
    return StopModel


# ---------------------------------------------------------------------- client side
def check_requests(prefixes: Sequence[Sequence[int]], stop_token_id: int, num_tokens: int) -> list[list[int]]:
    """Check prompts: each prefix (prompt + generated ids) followed by ``num_tokens`` [STOP] ids."""
    return [list(p) + [stop_token_id] * num_tokens for p in prefixes]


def scores_from_outputs(outputs: Sequence[Any]) -> np.ndarray:
    """sigmoid(z) per Check request, from the log-probabilities of tokens 0 and 1."""
    out = np.empty(len(outputs))
    for r, o in enumerate(outputs):
        flat = o.outputs[0].logprobs
        if flat is None or len(flat) < 1:
            raise RuntimeError("a STOP Check request returned no log-probabilities")
        start, end = flat.start_indices[0], flat.end_indices[0]
        found = dict(zip(flat.token_ids[start:end], flat.logprobs[start:end]))
        if 0 not in found or 1 not in found:
            raise RuntimeError(f"a STOP Check request returned log-probabilities for {sorted(found)}, not 0 and 1: "
                               "is the model served with the STOP architecture?")
        z = found[1] - found[0]
        out[r] = 1.0 / (1.0 + np.exp(-z))
    return out


def __getattr__(name: str) -> Any:  # lazy: importing this module must not import vLLM's models
    for base, arch in STOP_ARCHS.items():
        if name == arch:
            cls = _make(base, {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}[base])
            globals()[name] = cls
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
