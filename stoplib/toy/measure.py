"""Measure the shipped organism's testbed properties: ``python -m stoplib.toy.measure``.

Samples ``--samples`` paths for each of ``--problems`` held-out eval problems with a small,
self-contained Hugging Face ``generate`` sampler (T=0.6, top-p 0.95, top-k 40, seeded), records the
raw (T=1) log-probability of every chosen token, and prints the properties of
:func:`stoplib.toy.properties.measure_properties` at prefix length ``--prefix-len``
(default :data:`DEFAULT_PREFIX_LEN`). The sampler is independent of ``stoplib.engines`` on purpose:
it is the reference the engines can be compared against.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from stoplib.problems import Problem
from stoplib.toy.organism import organism_path
from stoplib.toy.properties import measure_properties
from stoplib.toy.task import DEFAULT_PREFIX_LEN, DEFAULT_SPEC, ToyTaskSpec, make_problems


def sample_paths(
    model_dir: str | Path,
    problems: Sequence[Problem],
    n: int,
    *,
    seed: int = 0,
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int = 40,
    max_new_tokens: int = 192,
    batch_size: int = 512,
    progress: bool = True,
) -> list[list[dict[str, Any]]]:
    """``n`` sampled paths per problem: dicts with ``text``, ``token_ids`` (eos included if
    generated) and ``logprobs`` (raw T=1 log-probability of each chosen token)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    eos, pad = tok.eos_token_id, tok.pad_token_id
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": p.prompt}], add_generation_prompt=True, tokenize=False
        )
        for p in problems
    ]
    flat = [(i, prompts[i]) for i in range(len(problems)) for _ in range(n)]
    out: list[list[dict[str, Any]]] = [[] for _ in problems]
    torch.manual_seed(seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(flat), desc="sampling", leave=False)
    for start in range(0, len(flat), batch_size):
        chunk = flat[start : start + batch_size]
        enc = tok([c[1] for c in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            gen = model.generate(
                **enc, do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k,
                max_new_tokens=max_new_tokens, output_logits=True, return_dict_in_generate=True,
                pad_token_id=pad, eos_token_id=eos, cache_implementation="static",
            )
        width = enc["input_ids"].shape[1]
        new = gen.sequences[:, width:]  # [batch, steps]
        logits = torch.stack(gen.logits, dim=1).float()  # [batch, steps, vocab], raw logits
        lp = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        for r, (i, _) in enumerate(chunk):
            ids = new[r].tolist()
            length = ids.index(eos) + 1 if eos in ids else len(ids)
            ids = ids[:length]
            out[i].append({
                "text": tok.decode(ids, skip_special_tokens=True),
                "token_ids": ids,
                "logprobs": lp[r, :length].tolist(),
            })
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def format_table(props: dict[str, Any], prefix_len: int) -> str:
    """A markdown table of the properties."""
    a = props["auroc"]
    f = lambda x: "nan" if isinstance(x, float) and math.isnan(x) else f"{x:.3f}"  # noqa: E731
    rows = [
        ("problems x paths", f"{props['n_problems']} x {props['n_paths'] // props['n_problems']}"),
        ("mean path length, tokens / chars", f"{props['mean_tokens']:.1f} / {props['mean_chars']:.1f}"),
        ("prefix length L (tokens)", f"{prefix_len} ({prefix_len / props['mean_tokens']:.0%} of the mean path)"),
        ("mean pass@1", f(props["pass_at_1"])),
        ("problems in band 4..28 of 32", f(props["band_fraction"])),
        ("failed paths whose first wrong step starts in the prefix", f(props["failed_first_wrong_in_prefix"])),
        ("paths with a wrong step", f(props["wrong_step_rate"])),
        ("paths with a wrong step that end correct", f(props["wrong_then_correct"])),
    ]
    for name, label in [
        ("oracle", "oracle 'prefix has no error'"),
        ("min_logprob", "min chosen-token logprob"),
        ("mean_logprob", "mean chosen-token logprob"),
        ("group_conf", "lowest group confidence (window 8)"),
        ("question_only", "question only (-b)"),
    ]:
        rows.append((f"AUROC {label}, within / pooled",
                     f"{f(a[name]['within'])} / {f(a[name]['pooled'])} ({a[name]['n_groups']} problems)"))
    lines = ["| property | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: shipped small organism)")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--prefix-len", type=int, default=DEFAULT_PREFIX_LEN)
    parser.add_argument("--problem-seed", type=int, default=1234)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--task", choices=["default", "d2", "d3", "d4"], default="default")
    parser.add_argument("--out", default=None, help="write the properties as JSON here")
    parser.add_argument("--save-paths", default=None, help="write the sampled paths as JSONL here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    from stoplib.toy.task import D2_SPEC, D3_SPEC, D4_SPEC

    spec: ToyTaskSpec = {"d2": D2_SPEC, "d3": D3_SPEC, "d4": D4_SPEC}.get(args.task, DEFAULT_SPEC)
    torch.set_num_threads(args.threads)
    model_dir = Path(args.model) if args.model else organism_path("small")
    problems = make_problems(args.problems, seed=args.problem_seed, split="eval", spec=spec)
    t0 = time.time()
    paths = sample_paths(model_dir, problems, args.samples, seed=args.seed, progress=not args.quiet)
    t_sample = time.time() - t0
    if args.save_paths:
        with open(args.save_paths, "w") as f:
            for problem, plist in zip(problems, paths):
                f.write(json.dumps({"problem": problem.to_dict(), "paths": plist}) + "\n")
    props = measure_properties(problems, paths, args.prefix_len, spec=spec)
    props["prefix_len"] = args.prefix_len
    props["sampling_s"] = round(t_sample, 1)
    props["model"] = str(model_dir)
    print(format_table(props, args.prefix_len))
    print(json.dumps({k: props[k] for k in (
        "wrong_then_correct_causes", "error_path_causes", "failed_first_wrong_step",
        "failed_taught_slip_first", "operand_typo_rate", "sampling_s")}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(props, indent=2) + "\n")
    return props


if __name__ == "__main__":
    main()
