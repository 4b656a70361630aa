"""The built-in reasoning "model organism": a tiny Llama trained from scratch on a synthetic
chain-of-thought task on which the STOP paper's phenomena are real and measurable on 2 CPU cores.

Design (task "D4", :mod:`stoplib.toy.task`)
-------------------------------------------
A question ``a8 f*7+3 g-4`` gives a start value and two operations mod 10: a "hard" one
``f(x) = a*x + b`` (``a`` in {3, 7}, ``b`` in {1..9} minus 5) and an "easy" one ``g(x) = x +- d``
(``d`` in {1..9} minus 5). The path applies ``f`` twice (steps b, c) and ``g`` eleven times (steps
d..n), one line per step, and ends in ``\\boxed{}``: 117 characters, 118 tokens with eos (one token
per character, :mod:`stoplib.toy.tokenizer`). Demonstrations slip at each hard step ("forgot the
+b") with probability ``0.05 * b`` and carry the wrong value forward, so ``b`` is a per-problem
difficulty knob and most errors are early and irreversible. D4 adds one late slip: at step h
(index 6, character 52, after the ``L = 36`` prefix) the sign of ``d`` is confused with
probability ``0.05 * d``. So a path with a clean prefix can still fail, and a prefix's Monte Carlo
soft label is a real probability (0.6-1.0 for clean prefixes, by ``d``) rather than 0 or 1.

History: the probe's design D2 (three hard steps, ``a`` in {3, 7, 9}, ``b`` in 1..9) let two "forgot
+b" slips cancel exactly (shifts ``-b*a**k`` summing to 0 mod 10), so 14.2% of its slipped
demonstrations ended correct. D3 (two hard steps, ``b != 5``) cannot cancel
(:func:`~stoplib.toy.task.cancelling_slip_sets` is empty), but every failure of D3 is decided
inside the prefix: its soft labels were all exactly 0 or 1, equal to the hard labels, which made
the paper's soft-vs-hard label ablation vacuous. D4 fixes that; a hard slip and the late slip can
cancel for some even ``b`` (:func:`~stoplib.toy.task.cancelling_late_slips`), rarely (2.4% of
sampled paths with a wrong step end correct). D3 stays available as ``D3_SPEC`` and the organism
preset ``small_d3``. Train and eval questions are disjoint (hash of the question string; 2,045
train / 515 eval questions).

The organism (:mod:`stoplib.toy.organism`, preset "small", shipped in ``weights/small``): Llama,
hidden 64, 4 layers, 4 heads, intermediate 256, tied embeddings, vocabulary 100, 269,120
parameters (1.08 MB fp32 safetensors); 1,200 AdamW steps (betas 0.9/0.98, weight decay 0.01) of 48
demonstrations, lr 3e-3 with 30 warmup steps and cosine decay to 5%, loss on answer tokens only,
seed 0, one thread. Build time 532 s on the shared 2-core machine (about 0.44 s/step). The same
seed, torch version and thread count give bit-identical weights.

The training length is the one tuned knob (tuned on D3): the hard operation is still partly
unlearned at 1,200 steps, so failures begin with the taught, sampled slips and with the model's
own, often confident, arithmetic errors. That mix is what puts token confidence in the middle.

Measured properties of the shipped organism
-------------------------------------------
Held-out eval problems x 32 paths, T=0.6, top-p 0.95, top-k 40; prefix ``L = 36`` generated tokens
(:data:`~stoplib.toy.task.DEFAULT_PREFIX_LEN`: the end of step e, 31% of the path). "within" =
mean per-problem AUROC over problems with both outcomes (:mod:`stoplib.metrics`); scores predict
a correct final answer.

| property | set A | set B |
|---|---|---|
| problems x paths (problem seed, sampling seed) | 64 x 32 (1234, 0) | 128 x 32 (7, 1) |
| mean path length (tokens) | 118.0 | 118.0 |
| mean pass@1 | 0.579 | 0.609 |
| problems with 4..28 of 32 correct | 0.781 | 0.766 |
| failed paths whose first wrong step starts in the prefix | 0.754 | 0.667 |
| paths with a wrong step | 0.431 | 0.401 |
| paths with the late sign slip | 0.154 | 0.177 |
| paths with a wrong step that still end correct | 0.024 | 0.026 |
| oracle "prefix contains an error", within / pooled | 0.808 / 0.868 | 0.761 / 0.825 |
| min chosen-token logprob of the prefix, within / pooled | 0.635 / 0.840 | 0.661 / 0.793 |
| mean chosen-token logprob, within / pooled | 0.618 / 0.843 | 0.666 / 0.791 |
| lowest group confidence (window 8), within / pooled | 0.635 / 0.840 | 0.661 / 0.794 |
| question only (-b), pooled | 0.771 | 0.716 |
| problems with both outcomes (used for "within") | 58 | 115 |

In set A the failures start at step b (405), step c (245) or the late step h (212); the model makes
no other easy-step errors. The oracle is below 1 because a quarter of the failures happen after
the prefix, where no prefix signal can see them. Reproduce set A with
``python -m stoplib.toy.measure`` (about 30 s) and set B with
``python -m stoplib.toy.measure --problems 128 --problem-seed 7 --seed 1``.

Public API
----------
* :func:`~stoplib.toy.task.make_problems` ``(n, seed=0, split="eval", spec=DEFAULT_SPEC) -> list[Problem]``
* :func:`~stoplib.toy.task.solution_text` ``(problem, rng=None, spec=DEFAULT_SPEC, *, slip_prob=None) -> str``
* :func:`~stoplib.toy.task.check_path` ``(problem, text, spec=DEFAULT_SPEC) -> PathCheck``
* :func:`~stoplib.toy.tokenizer.build_tokenizer` ``() -> PreTrainedTokenizerFast``
* :class:`~stoplib.toy.organism.OrganismConfig`, ``ORGANISM_PRESETS`` ("tiny", "small"),
  :func:`~stoplib.toy.organism.build_organism` ``(out_dir, config, *, progress=True, callback=None) -> Path``,
  :func:`~stoplib.toy.organism.organism_path` ``(scale="small") -> Path``
* :func:`~stoplib.toy.properties.measure_properties` ``(problems, paths, prefix_len=None, *, spec, window=8, decode=None) -> dict``
"""

from stoplib.toy.organism import ORGANISM_PRESETS, OrganismConfig, build_organism, organism_path
from stoplib.toy.task import (
    D3_SPEC,
    D4_SPEC,
    DEFAULT_PREFIX_LEN,
    DEFAULT_SPEC,
    LONG_SPEC,
    MC_SPEC,
    PathCheck,
    ToyTaskSpec,
    check_path,
    make_problems,
    solution_text,
)
from stoplib.toy.tokenizer import build_tokenizer

__all__ = [
    "DEFAULT_PREFIX_LEN",
    "D3_SPEC",
    "D4_SPEC",
    "DEFAULT_SPEC",
    "LONG_SPEC",
    "MC_SPEC",
    "ORGANISM_PRESETS",
    "OrganismConfig",
    "PathCheck",
    "ToyTaskSpec",
    "build_organism",
    "build_tokenizer",
    "check_path",
    "make_problems",
    "organism_path",
    "solution_text",
]
