"""The built-in reasoning "model organism": a tiny Llama trained from scratch on a synthetic
chain-of-thought task on which the STOP paper's phenomena are real and measurable on 2 CPU cores.

Design (task "D3", :mod:`stoplib.toy.task`)
-------------------------------------------
A question ``a8 f*7+3 g-4`` gives a start value and two operations mod 10: a "hard" one
``f(x) = a*x + b`` (``a`` in {3, 7}, ``b`` in {1..9} minus 5) and an "easy" one ``g(x) = x +- d``.
The path applies ``f`` twice (steps b, c) and ``g`` eleven times (steps d..n), one line per step,
and ends in ``\\boxed{}``: 117 characters, 118 tokens with eos (one token per character,
:mod:`stoplib.toy.tokenizer`). Demonstrations slip at each hard step ("forgot the +b") with
probability ``0.05 * b`` and carry the wrong value forward, so ``b`` is a per-problem difficulty
knob and errors are early and irreversible. It is the probe's design D2 with three changes, all
needed to stop slips from cancelling: D2's three hard steps with ``a`` in {3, 7, 9} and ``b`` in
1..9 let two "forgot +b" slips cancel exactly (shifts ``-b*a**k`` summing to 0 mod 10: steps 1 and 3
for ``a`` in {3, 7}, adjacent steps for ``a = 9``, any pair for ``b = 5``), so 14.2% of D2's slipped
demonstrations end correct -- the undiagnosed 11.5% of the probe (in a D2 build here, 320 of the
349 sampled wrong-then-correct paths had two or more wrong hard steps). With two hard steps the
double-slip shift ``-b(a+1)`` is never 0 mod 10 for ``a`` in {3, 7}, ``b != 5``
(:func:`~stoplib.toy.task.cancelling_slip_sets` is empty). Train and eval questions are disjoint
(hash of the question string; 2,316 train / 564 eval questions).

The organism (:mod:`stoplib.toy.organism`, preset "small", shipped in ``weights/small``): Llama,
hidden 64, 4 layers, 4 heads, intermediate 256, tied embeddings, vocabulary 100, 269,120
parameters (1.08 MB fp32 safetensors); 1,200 AdamW steps (betas 0.9/0.98, weight decay 0.01) of 48
demonstrations, lr 3e-3 with 30 warmup steps and cosine decay to 5%, loss on answer tokens only,
seed 0, one thread. Build time 510 s on the shared 2-core machine under contention (about 0.43
s/step). Rebuilding gives bit-identical weights (checked: two separate builds matched).

The training length is the one tuned knob: the hard operation is still partly unlearned at 1,200
steps (teacher-forced accuracy of hard-step results 0.76, easy steps 1.00), so about half the
failures begin with the taught, sampled slip and half with the model's own, often confident,
arithmetic errors. That mix is what puts token confidence in the middle: at 1,000 steps the
best confidence AUROC within problems was 0.69 (pass@1 0.49), at 1,500 steps 0.89 (pass@1 0.74,
out of the 0.55-0.85 target).

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
| mean pass@1 | 0.517 | 0.504 |
| problems with 4..28 of 32 correct | 0.656 | 0.734 |
| failed paths whose first wrong step starts in the prefix | 1.000 | 1.000 |
| paths with a wrong step | 0.502 | 0.508 |
| paths with a wrong step that still end correct | 0.037 | 0.024 |
| oracle "prefix contains an error", within / pooled | 0.972 / 0.982 | 0.981 / 0.988 |
| min chosen-token logprob of the prefix, within / pooled | 0.732 / 0.873 | 0.642 / 0.828 |
| mean chosen-token logprob, within / pooled | 0.731 / 0.865 | 0.699 / 0.840 |
| lowest group confidence (window 8), within / pooled | 0.732 / 0.872 | 0.642 / 0.828 |
| question only (-b), pooled | 0.754 | 0.727 |
| problems with both outcomes (used for "within") | 56 | 115 |

The remaining wrong-then-correct paths all have two wrong hard steps where at least one is the
model's own (untaught) error, landing back on the right value by coincidence. Reproduce set A with
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
    DEFAULT_PREFIX_LEN,
    DEFAULT_SPEC,
    PathCheck,
    ToyTaskSpec,
    check_path,
    make_problems,
    solution_text,
)
from stoplib.toy.tokenizer import build_tokenizer

__all__ = [
    "DEFAULT_PREFIX_LEN",
    "DEFAULT_SPEC",
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
