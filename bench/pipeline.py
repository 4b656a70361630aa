"""Online pipeline vs no pruning, per engine: tokens, time and accuracy (ratios within one run).

N paths per problem pruned to k at L with a signal, against running all N to completion, at the
sizes of the model preset's ``small`` scale (organism: 64 -> 8 at L = 36; SmolLM2: 32 -> 4 at
L = 20) on its held-out problems.

- HF engine: counter-based sampling makes the pipeline's paths equal to the uninterrupted ones,
  so the pipeline's token count must equal what the replay accounting predicts on the
  uninterrupted paths with the pipeline's kept set, exactly.
- vLLM engine: a resumed path continues with a fresh seed (so its continuation differs from the
  uninterrupted path), and the check is against vLLM's own count of the tokens it returned
  (``VLLMEngine.generated_tokens``): it must equal the pipeline's accounting (N prefixes + the
  continuations of the kept paths).
- With ``--engine both`` (needs vLLM) the two engines' accuracies (avg@k|N and avg@N) are compared
  per problem, with a 95% bootstrap interval of the mean difference (paired, scipy.stats.bootstrap): the
  engines sample different paths, so they should agree within that interval.

    python bench/pipeline.py [--model toy] [--engine hf] [--problems 16] [--signal mean_logprob]
    .venv-vllm/bin/python bench/pipeline.py --model smollm2-135m --engine both --problems 24

The last line prints the ratios.

``--sweep`` (HF engine) instead measures the pipeline at each ``--ks`` x ``--lengths`` against no
pruning, interleaved and repeated ``--repeats`` times (no pruning runs at the start and the end of
every repeat; each pipeline run is compared with the mean of that repeat's two), and prints per
(k, L) the median wall ratio (pipeline / no pruning), the token ratio and their quotient
(wall / tokens: 1.0 means the pipeline's wall time falls exactly with its tokens). With
``--compare-resume`` every cell also runs with each group of problems resumed on its own
(``resume_rows=None``) instead of the kept paths of consecutive groups together; both must spend
the same tokens. With ``--batch-size 64`` (one problem of 64 paths per group, as at the paper's
scale) the difference shows: each group alone resumes only k paths per batch.

    python bench/pipeline.py --sweep [--ks 8 16] [--lengths 24 36 53] [--repeats 3] [--signal stop]
    python bench/pipeline.py --sweep --batch-size 64 --compare-resume

``--schedule 36:32,54:16,72:8`` (HF engine) times progressive pruning the same way: no pruning,
the schedule (Launch to the first L, then each stage's survivors advanced to the next L and checked
again) and single-stage pruning to the schedule's last k at its first L, with their wall and token
ratios; the schedule's tokens must equal what ``metrics.replay_progressive`` predicts on the
uninterrupted paths with the same scores.

    python bench/pipeline.py --schedule 36:32,54:16,72:8 [--problems 16] [--repeats 3] [--signal stop]

With ``--signal stop`` the engine runs on the base model of the store's trained STOP module and
Check appends the [STOP] tokens to the paused cache (the paper's Check).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from stoplib import stages  # noqa: E402
from stoplib.config import RunConfig, resolve  # noqa: E402
from stoplib.engines.hf import HFEngine, load_model_and_tokenizer  # noqa: E402
from stoplib.grading import grade  # noqa: E402
from stoplib.metrics import paired_bootstrap_ci  # noqa: E402
from stoplib.pipeline import PipelineResult, run_pipeline  # noqa: E402
from stoplib.signals import Signal, make_signal  # noqa: E402


def run_engine(config: RunConfig, n: int, k: int, problems: int, signal_name: str) -> dict:
    """No pruning and the pipeline on one engine; returns tokens, times and per-problem accuracies."""
    engine = stages.engine_for(config, **({"in_process": True} if config.engine == "vllm" else {}))
    chosen = stages.eval_problems(config)[:problems]
    prompts = stages.prompts_for(chosen, engine.tokenizer, config)
    params, L = config.sampling, config.prefix_len
    engine.generate(prompts[:1], 2, params)  # warm-up

    start = time.perf_counter()
    full = engine.generate(prompts, n, params)
    t_full = time.perf_counter() - start
    tokens_full = sum(p.generated_tokens for g in full for p in g)

    counted_before = getattr(engine, "generated_tokens", None)
    start = time.perf_counter()
    result: PipelineResult = run_pipeline(engine, chosen, prompts, make_signal(signal_name), n=n, k=k,
                                          prefix_len=L, params=params)
    t_pipe = time.perf_counter() - start
    if counted_before is not None:  # vLLM: the tokens it returned during the pipeline
        reference, what = engine.generated_tokens - counted_before, "tokens vLLM returned"
    else:  # HF: the replay accounting on the uninterrupted paths, with the pipeline's kept set
        reference, what = 0, "replay accounting on the uninterrupted paths"
        for group, pr in zip(full, result.problems):
            kept = {r.sample_index for r in pr.records if r.kept}
            reference += sum(p.generated_tokens if p.sample_index in kept else min(L, p.generated_tokens) for p in group)
    decode = lambda p: engine.tokenizer.decode(p.token_ids, skip_special_tokens=True)  # noqa: E731
    avg_full = [float(np.mean([grade(decode(p), problem).correct for p in group])) for problem, group in zip(chosen, full)]
    avg_kept = [float(np.mean([r.correct for r in pr.records if r.kept])) for pr in result.problems]
    hit = getattr(engine, "prefix_cache_hit_rate", None)
    print(f"[{config.engine}] no pruning: {tokens_full} tokens in {t_full:.1f}s | pipeline {n}->{k} at L={L}: "
          f"{result.tokens} tokens ({what}: {reference}) in {t_pipe:.1f}s | avg@{k}|{n} {np.mean(avg_kept):.3f}, "
          f"avg@{n} {np.mean(avg_full):.3f}, Cons {result.cons:.3f}"
          + (f" | Resume prefix-cache hit rate {hit:.3f}" if hit is not None else ""), flush=True)
    return {"tokens_full": tokens_full, "t_full": t_full, "tokens": result.tokens, "reference": reference,
            "t_pipe": t_pipe, "avg_kept": np.array(avg_kept), "avg_full": np.array(avg_full)}


def sweep_engine(config: RunConfig, signal_name: str) -> tuple[HFEngine, Signal]:
    """The HF engine and the signal; for "stop", the store's trained STOP module (seed 0) on the
    engine's own model, so that Check reads the paused KV cache (``StopSignal.score_launch``)."""
    if signal_name != "stop":
        return stages.engine_for(config), make_signal(signal_name)
    if not stages.is_trained(config, "stop"):
        raise SystemExit("--signal stop needs the store's trained STOP module of this config (notebook 02; "
                         "the preset's batch size)")
    stages.use_threads(config)
    base, tokenizer = load_model_and_tokenizer(config.model_path, attn_implementation=config.attn_implementation)
    scorer = stages.load_stop(config, base_model=base, tokenizer=tokenizer)
    return HFEngine(scorer.base_model, tokenizer, batch_size=config.batch_size), make_signal("stop", scorer=scorer)


def sweep(config: RunConfig, n: int, ks: list[int], lengths: list[int], problems: int, signal_name: str,
          repeats: int, compare_resume: bool) -> None:
    """Wall ratio, token ratio and their quotient of the pipeline vs no pruning, per (k, L) (and per
    Resume mode: kept paths of consecutive groups resumed together, or each group on its own)."""
    engine, signal = sweep_engine(config, signal_name)
    chosen = stages.eval_problems(config)[:problems]
    prompts = stages.prompts_for(chosen, engine.tokenizer, config)
    params = config.sampling
    engine.generate(prompts[:1], 2, params)  # warm-up
    modes = {"pooled": "auto", "per group": None} if compare_resume else {"pooled": "auto"}
    cells = [(k, L, mode) for k in ks for L in lengths for mode in modes]
    walls: dict[tuple, list[float]] = {cell: [] for cell in cells}
    tokens: dict[tuple, int] = {}
    for r in range(repeats):
        start = time.perf_counter()
        full = engine.generate(prompts, n, params)
        t_full = time.perf_counter() - start
        tokens_full = sum(p.generated_tokens for g in full for p in g)
        times = {}
        for cell in (cells if r % 2 == 0 else cells[::-1]):
            k, L, mode = cell
            start = time.perf_counter()
            result = run_pipeline(engine, chosen, prompts, signal, n=n, k=k, prefix_len=L, params=params,
                                  resume_rows=modes[mode])
            times[cell] = time.perf_counter() - start
            tokens[cell] = result.tokens
        start = time.perf_counter()
        engine.generate(prompts, n, params)
        t_full = (t_full + time.perf_counter() - start) / 2
        for cell in cells:
            walls[cell].append(times[cell] / t_full)
        print(f"repeat {r + 1}/{repeats}: no pruning {t_full:.2f}s, " + ", ".join(
            f"{n}->{k} L={L} {mode} {times[(k, L, mode)]:.2f}s" for k, L, mode in cells), flush=True)
    print(f"batch {config.batch_size}, {problems} problems, signal {signal_name}, medians of {repeats}")
    print(f"{'N->k':>7} {'L':>4} {'resume':>10} {'wall ratio':>11} {'token ratio':>12} {'wall/token':>11}")
    for k, L, mode in cells:
        wall, ratio = float(np.median(walls[(k, L, mode)])), tokens[(k, L, mode)] / tokens_full
        print(f"{f'{n}->{k}':>7} {L:>4} {mode:>10} {wall:>11.3f} {ratio:>12.3f} {wall / ratio:>11.3f}", flush=True)
    for k, L, _ in cells:  # the Resume mode changes no token
        assert len({tokens[(k, L, mode)] for mode in modes}) == 1, (k, L)


def parse_schedule(text: str) -> list[tuple[int, int]]:
    """``"36:32,54:16,72:8"`` -> ``[(36, 32), (54, 16), (72, 8)]`` (prefix length : paths kept)."""
    try:
        return [(int(length), int(k)) for length, k in (stage.split(":") for stage in text.split(","))]
    except ValueError:
        raise SystemExit(f"--schedule {text!r}: expected L:k stages separated by commas, e.g. 36:32,54:16,72:8")


def schedule_bench(config: RunConfig, n: int, schedule: list[tuple[int, int]], problems: int, signal_name: str,
                   repeats: int) -> None:
    """Wall and token ratios of a progressive schedule and of single-stage pruning (the schedule's last k
    at its first L) against no pruning; the schedule's tokens checked against the replay."""
    from stoplib.bank import Bank, BankProblem
    from stoplib.metrics import replay_progressive, schedule_text, score_bank

    engine, signal = sweep_engine(config, signal_name)
    chosen = stages.eval_problems(config)[:problems]
    prompts = stages.prompts_for(chosen, engine.tokenizer, config)
    params = config.sampling
    runs = {"schedule": {"schedule": schedule}, "single": {"k": schedule[-1][1], "prefix_len": schedule[0][0]}}
    engine.generate(prompts[:1], 2, params)  # warm-up
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(repeats):
        start = time.perf_counter()
        full = engine.generate(prompts, n, params)
        t_full = time.perf_counter() - start
        results = {}
        for name, kwargs in runs.items():
            start = time.perf_counter()
            results[name] = run_pipeline(engine, chosen, prompts, signal, n=n, params=params, **kwargs)
            walls[name].append((time.perf_counter() - start) / t_full)
    tokens_full = sum(p.generated_tokens for g in full for p in g)
    bank = Bank([BankProblem(problem, group, [None] * n, np.zeros(n, dtype=bool))
                 for problem, group in zip(chosen, full)])
    scores = {L: score_bank(bank, signal, L) for L, _ in schedule}
    predicted = replay_progressive(bank, scores, schedule, n=n).total_tokens
    print(f"batch {config.batch_size}, {problems} problems, signal {signal_name}, medians of {repeats}")
    for name, result in results.items():
        wall, ratio = float(np.median(walls[name])), result.tokens / tokens_full
        label = schedule_text(schedule if name == "schedule" else [(schedule[0][0], schedule[-1][1])], n)
        print(f"{label:>24}: wall ratio {wall:.3f}, token ratio {ratio:.3f}, wall/token {wall / ratio:.3f}, "
              f"Cons@N {result.cons:.3f}")
    print(f"schedule tokens online {results['schedule'].tokens}, replayed {predicted}")
    assert results["schedule"].tokens == predicted


def difference_ci(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of a - b over problems with a 95% paired bootstrap interval."""
    ci = paired_bootstrap_ci(a, b, n_boot=5000)
    return ci.estimate, ci.low, ci.high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="toy", help="a model preset (toy, smollm2-135m) or a model directory")
    parser.add_argument("--engine", choices=("hf", "vllm", "both"), default="hf")
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--signal", default="mean_logprob")
    parser.add_argument("--n", type=int, default=None, help="paths per problem (default: the preset's)")
    parser.add_argument("--k", type=int, default=None, help="paths kept (default: the preset's)")
    parser.add_argument("--sweep", action="store_true", help="HF engine: the wall/token table over --ks x --lengths")
    parser.add_argument("--ks", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--lengths", type=int, nargs="+", default=[24, 36, 53])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-resume", action="store_true",
                        help="--sweep: also each group resumed on its own (run_pipeline(resume_rows=None))")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="--sweep: the HF engine's batch (default: the preset's)")
    parser.add_argument("--schedule", default=None,
                        help="HF engine: time a progressive schedule, e.g. 36:32,54:16,72:8 (L:k per stage)")
    args = parser.parse_args()
    if args.schedule:
        config = resolve("small", model=args.model, engine="hf",
                         **({"batch_size": args.batch_size} if args.batch_size else {}))
        schedule_bench(config, args.n or config.n_paths, parse_schedule(args.schedule), args.problems, args.signal,
                       args.repeats)
        return
    if args.sweep:
        config = resolve("small", model=args.model, engine="hf",
                         **({"batch_size": args.batch_size} if args.batch_size else {}))
        sweep(config, args.n or config.n_paths, args.ks, args.lengths, args.problems, args.signal, args.repeats,
              args.compare_resume)
        return
    engines = ("hf", "vllm") if args.engine == "both" else (args.engine,)
    runs = {}
    for name in engines:
        config = resolve("small", model=args.model, engine=name)
        n, k = args.n or config.n_paths, args.k or config.keep
        runs[name] = run_engine(config, n, k, args.problems, args.signal)
    ratios = []
    for name, r in runs.items():
        ratios.append(f"[{name}] tokens pipeline/full={r['tokens'] / r['tokens_full']:.3f} "
                      f"time pipeline/full={r['t_pipe'] / r['t_full']:.3f} "
                      f"tokens pipeline/reference={r['tokens'] / r['reference']:.4f}")
    if len(runs) == 2:
        for key in ("avg_kept", "avg_full"):
            mean, low, high = difference_ci(runs["vllm"][key], runs["hf"][key])
            ratios.append(f"{key} vllm-hf={mean:+.3f} [{low:+.3f}, {high:+.3f}]")
        ratios.append(f"time vllm/hf full={runs['vllm']['t_full'] / runs['hf']['t_full']:.3f}")
    print("RATIOS " + " | ".join(ratios))


if __name__ == "__main__":
    main()
