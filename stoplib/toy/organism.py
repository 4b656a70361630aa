"""Train the built-in reasoning model organism: a tiny Llama learned from scratch on the toy task.

``build_organism(out_dir, ORGANISM_PRESETS["small"])`` trains a ``LlamaForCausalLM`` (from a
``LlamaConfig``: any Llama loader, vLLM included, can serve it) on demonstrations of
:mod:`stoplib.toy.task` with a fixed seed, and writes a standard Hugging Face directory:
``config.json``, ``model.safetensors``, ``generation_config.json``, the tokenizer files and
``build_info.json``. The same seed, torch version and thread count give bit-identical weights.

The trained "small" organism ships in the repository (``stoplib/toy/weights/small``, about 1 MB);
:func:`organism_path` returns it. Rebuild it with
``python -c "from stoplib.toy.organism import *; build_organism('out', ORGANISM_PRESETS['small'])"``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from stoplib.toy.task import D3_SPEC, DEFAULT_SPEC, LONG_SPEC, MC_SPEC, ToyTaskSpec, question_pool, solution_text
from stoplib.toy.tokenizer import build_tokenizer, prompt_text, save_tokenizer

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass(frozen=True)
class OrganismConfig:
    """Model dimensions, optimisation and data knobs of one organism build."""

    hidden_size: int = 64
    intermediate_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    steps: int = 1200
    batch_size: int = 48
    lr: float = 3e-3
    warmup_steps: int = 30
    min_lr_ratio: float = 0.05  # cosine decays to lr * min_lr_ratio
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 1  # torch threads during the build (part of what makes it repeatable)
    task: ToyTaskSpec = field(default_factory=lambda: DEFAULT_SPEC)
    #: More task families in the training mix: each row of a batch is drawn from ``task`` or one
    #: of these with equal probability (empty: ``task`` only, and the random stream of one task).
    more_tasks: tuple[ToyTaskSpec, ...] = ()
    #: Loss weight of the boxed answer's token (the letter of a multiple-choice path, the digit of
    #: a free answer) against 1 for every other answer token. 1: the plain mean loss.
    answer_weight: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


ORGANISM_PRESETS: dict[str, OrganismConfig] = {
    # CI smoke test of the build path: seconds, no useful behaviour.
    "tiny": OrganismConfig(
        hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, steps=30, batch_size=8,
        warmup_steps=5,
    ),
    # The default model of every notebook (shipped in stoplib/toy/weights/small).
    "small": OrganismConfig(),
}
#: The earlier organism: "small" trained on design D3 (no late slip; all-or-nothing MC labels).
ORGANISM_PRESETS["small_d3"] = dataclasses.replace(ORGANISM_PRESETS["small"], task=D3_SPEC)
#: The "long" organism (shipped in stoplib/toy/weights/long): 24-step paths, where the L = 36
#: prefix is ~17% of a path, and the multiple-choice family for out-of-domain transfer.
ORGANISM_PRESETS["long"] = dataclasses.replace(ORGANISM_PRESETS["small"], task=LONG_SPEC, more_tasks=(MC_SPEC,),
                                               steps=1600)


def organism_path(scale: str = "small") -> Path:
    """Directory of the shipped, trained organism weights for ``scale`` ("small" and "long" ship)."""
    path = WEIGHTS_DIR / scale
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no shipped organism for scale {scale!r} at {path} (only 'small' and 'long' ship); build one with "
            f"`stoplib toy --scale {scale}` (writes results/organism/{scale})"
        )
    return path


def llama_config(config: OrganismConfig, vocab_size: int, bos: int, eos: int, pad: int):
    """The ``transformers.LlamaConfig`` of an organism."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_theta=config.rope_theta,
        tie_word_embeddings=True,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
        dtype="float32",
    )


def _max_new_tokens(config: OrganismConfig) -> int:
    """Room for the longest path of the organism's tasks (at most 9 characters a step, plus the answer)."""
    return max(192, 32 + 9 * max(spec.n_steps for spec in (config.task, *config.more_tasks)))


def _lr_at(step: int, config: OrganismConfig) -> float:
    """Linear warmup, then cosine decay to ``lr * min_lr_ratio``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cos)


def training_batch(
    rng: np.random.Generator, config: OrganismConfig, vocab: dict[str, int], pad_id: int, eos_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, labels)``, each ``[batch, seq]``: random train questions with
    slipped demonstrations; labels are -100 except on answer tokens (path + eos); right-padded."""
    specs = (config.task,) + tuple(config.more_tasks)
    family = rng.integers(0, len(specs), size=config.batch_size) if config.more_tasks else [0] * config.batch_size
    pools = [question_pool("train", spec) for spec in specs]
    idx = [rng.integers(0, len(pools[f])) for f in family] if config.more_tasks else \
        rng.integers(0, len(pools[0]), size=config.batch_size)
    seqs, n_prompt = [], []
    for f, i in zip(family, idx):
        q = pools[f][int(i)]
        prompt = [vocab["<bos>"]] + [vocab[c] for c in prompt_text(q.text)[len("<bos>"):]]
        answer = [vocab[c] for c in solution_text(q, rng, specs[f])] + [eos_id]
        seqs.append(prompt + answer)
        n_prompt.append(len(prompt))
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), -100, dtype=torch.long)
    for r, (s, n) in enumerate(zip(seqs, n_prompt)):
        ids[r, : len(s)] = torch.tensor(s)
        mask[r, : len(s)] = 1
        labels[r, n : len(s)] = torch.tensor(s[n:])
    return ids, mask, labels


def _loss(model, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor, answer_weight: float) -> torch.Tensor:
    """Next-token loss on the answer tokens; the boxed answer's token weighs ``answer_weight``
    (it sits two tokens before the eos that ends each row: ``X}`` then eos)."""
    if answer_weight == 1.0:
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = labels[:, 1:]
    weight = (target != -100).to(logits.dtype)
    rows = torch.arange(len(ids))
    weight[rows, mask.sum(1) - 4] = answer_weight  # target index of the answer token (position len - 3)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
    return (ce * weight).sum() / weight.sum()


def build_organism(
    out_dir: str | Path,
    config: OrganismConfig,
    *,
    progress: bool = True,
    callback: Callable[[int, Any, float], None] | None = None,
) -> Path:
    """Train an organism from scratch with ``config`` and save it (HF format) into ``out_dir``.

    Returns ``out_dir``. Deterministic for a given seed, torch version and ``config.threads``.
    ``callback(step, model, loss)``, if given, runs after every optimizer step (monitoring only:
    it must not touch the random generators or the model's weights).
    """
    from transformers import GenerationConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    t0 = time.time()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        tok = build_tokenizer()
        vocab = tok.get_vocab()
        bos, eos, pad = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(llama_config(config, len(vocab), bos, eos, pad))
        model.train()
        decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=config.betas,
        )
        rng = np.random.default_rng(config.seed)
        losses: list[float] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=config.steps, desc="organism", leave=False)
        for step in range(config.steps):
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, config)
            ids, mask, labels = training_batch(rng, config, vocab, pad, eos)
            loss = _loss(model, ids, mask, labels, config.answer_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            losses.append(loss.item())
            if callback is not None:
                callback(step, model, losses[-1])
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if bar is not None:
            bar.close()
        model.eval()
        model.generation_config = GenerationConfig(
            bos_token_id=bos, eos_token_id=eos, pad_token_id=pad, do_sample=True,
            temperature=0.6, top_p=0.95, top_k=40, max_new_tokens=_max_new_tokens(config),
        )
        # written beside the target and swapped in at the end: a killed build leaves the old weights
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = out_dir.with_name(f".{out_dir.name}.building")
        if staging.exists():
            shutil.rmtree(staging)
        model.save_pretrained(staging, safe_serialization=True)
        save_tokenizer(staging)
        info = {
            "config": config.to_dict(),
            "seed": config.seed,
            "steps": config.steps,
            "final_loss": float(np.mean(losses[-20:])) if losses else None,
            "loss_curve": [round(float(np.mean(losses[i : i + 50])), 5) for i in range(0, len(losses), 50)],
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "wall_time_s": round(time.time() - t0, 1),
            "torch": torch.__version__,
            "threads": config.threads,
        }
        (staging / "build_info.json").write_text(json.dumps(info, indent=2) + "\n")
        previous = out_dir.with_name(f".{out_dir.name}.previous")
        if previous.exists():
            shutil.rmtree(previous)
        if out_dir.exists():
            os.replace(out_dir, previous)
        os.replace(staging, out_dir)
        shutil.rmtree(previous, ignore_errors=True)
        return out_dir
    finally:
        torch.set_num_threads(old_threads)
