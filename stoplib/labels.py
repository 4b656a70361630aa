"""Dataset construction for STOP (paper Appendix B, Figure 8): Monte Carlo soft labels.

1. Difficulty stratification: sample ``n_filter`` paths per problem (paper: 32) and keep the
   problems with ``band`` correct (paper: 4..28 of 32) — neither trivial nor hopeless.
2. Prefixes: the filtering paths of kept problems, cut at each L in ``prefix_lens`` (paper:
   2048). A path that ends before L gives no prefix at that L. (The paper does not say where
   its prefixes come from; reusing the filtering rollouts matches the counts of its Table 10.)
3. Monte Carlo rollouts: ``k_rollouts`` continuations of each fixed prefix (paper: 32 at
   T=0.6); soft label = fraction correct. The hard label is the correctness of the original
   path the prefix was cut from (the paper's K=1 ablation). Prefixes of different source paths
   get independent rollouts even when their text is identical (:func:`rollout_seed`).

Continuations of one prefix share its KV cache (the engine encodes each distinct prompt once
per batch), so a prefix is encoded once, not K times. Every stage appends to a JSONL log
keyed by its unit of work (problem; problem/sample/L), so a killed run continues where it
stopped with no lost and no duplicated records. Records use the authors' released schema
(``prefix_token_ids``, ``Soft_label``, ``Hard_label``) plus our fields.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from .engines.base import Engine
from .grading import grade
from .parallel import run_in_processes
from .problems import Problem
from .stage_configs import LabelConfig
from .store import JsonlLog, atomic_write_json, atomic_write_text, read_jsonl


def split_of(problem_id: str, val_fraction: float, seed: int = 0) -> str:
    """"train" or "val", by a hash of the problem id: no problem is in both."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{problem_id}".encode()).digest()[:8], "little")
    return "val" if h / 2**64 < val_fraction else "train"


def rollout_seed(seed: int, source_sample: int) -> int:
    """Sampling seed of the Monte Carlo rollouts of prefixes cut from filter path ``source_sample``.

    Sampling is keyed by (seed, context, sample, position), so two paths of a problem that share
    their first L tokens (common on the organism: every clean prefix of a problem is the same
    text) would otherwise get the very same K rollouts. A seed per source path makes them
    independent estimates, as distinct prefixes' rollouts are.
    """
    digest = hashlib.sha256(f"{seed}:rollouts:{source_sample}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def in_band(n_correct: int, config: LabelConfig) -> bool:
    return config.band[0] <= n_correct <= config.band[1]


def _text(engine: Engine, ids: Sequence[int]) -> str:
    return engine.tokenizer.decode(list(ids), skip_special_tokens=True)


EngineSource = Union[Engine, Callable[[], Engine]]


def build_labels(
    engine: EngineSource,
    problems: Sequence[Problem],
    prompts: Sequence[Sequence[int]],
    config: LabelConfig,
    out_dir: str | Path,
    *,
    workers: int = 1,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run (or continue) the construction into ``out_dir``; returns the dataset card.

    ``engine`` is an engine, or a zero-argument factory of one. With ``workers > 1`` the problems
    are sharded over that many spawned processes, each building its own engine from the factory
    (which must then be picklable, e.g. ``functools.partial(stages.engine_for, config)``): on a
    CPU, one single-threaded tiny model per core is about ``workers`` times faster than one
    process. Sampling is keyed by (seed, prompt, sample, position), so the labels are identical
    for any number of workers and across kills and resumes.

    Files: ``logs/`` (the append-only work logs, one pair per worker), then, merged in problem
    order: ``filter.jsonl`` (one record per problem), ``labels.jsonl`` (one per prefix),
    ``train.jsonl`` / ``val.jsonl`` (split by problem), ``card.json``.
    ``on_batch(n_done)`` is called after each rollout batch (used by the crash test).
    """
    if len(problems) != len(prompts):
        raise ValueError(f"{len(problems)} problems but {len(prompts)} prompts")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_dir = Path(out_dir)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    excluded = set(config.exclude_ids)
    todo = [(p, list(ids)) for p, ids in zip(problems, prompts) if p.id not in excluded]
    start = time.time()
    if workers == 1 or len(todo) <= 1:
        if not isinstance(engine, Engine) and callable(engine):
            engine = engine()
        _construct(engine, todo, config, out_dir, 0, _progress(progress), on_batch)
    else:
        if isinstance(engine, Engine) or not callable(engine):
            raise TypeError("workers > 1 needs a picklable engine factory, not an engine instance")
        _run_workers(engine, todo, config, out_dir, workers, _progress(progress))
    return write_card(out_dir, config, [p.id for p, _ in todo], time.time() - start)


def _label_key(record: dict) -> str:
    return f"{record['problem_id']}|{record['sample_index']}|{record['prefix_len']}"


def _order(unit: tuple[str, dict, int]) -> tuple[int, int]:
    """Rollout units are batched by prefix length, in source-sample order within it."""
    return unit[2], unit[1]["sample_index"]


def prefix_paths(paths: Sequence[Any], cap: int | None, position: int) -> list[Any]:
    """The filter paths labelled at the ``position``-th prefix length: every one without a cap, else
    ``cap`` of them, each length starting where the one before stopped (wrapping around), so that
    with several lengths a problem's prefixes come from as many different paths as there are."""
    if cap is None or not paths:
        return list(paths)
    start = (position * cap) % len(paths)
    return (list(paths[start:]) + list(paths[:start]))[:cap]


def _read_logs(out_dir: Path, name: str) -> list[dict]:
    """The committed records of every worker's ``logs/<name>-<i>.jsonl``."""
    return [r for path in sorted((out_dir / "logs").glob(f"{name}-*.jsonl")) for r in read_jsonl(path)]


def _construct(engine: Engine, todo: Sequence[tuple[Problem, list[int]]], config: LabelConfig, out_dir: Path,
               worker: int, bar: Callable[[str], None], on_batch: Callable[[int], None] | None = None,
               report: Callable[[dict[str, int]], None] | None = None) -> None:
    """One worker's share: filter its problems, then label their prefixes; skips logged work."""
    tokens = {"filter": 0, "rollouts": 0}
    # 1. difficulty filter (and the prefix sources)
    done = {r["problem_id"] for r in _read_logs(out_dir, "filter")}
    filter_log = JsonlLog(out_dir / "logs" / f"filter-{worker}.jsonl", key="problem_id")
    pending = [(p, ids) for p, ids in todo if p.id not in done]
    step = max(1, config.batch_prefixes // 4)
    for i in range(0, len(pending), step):
        part = pending[i : i + step]
        groups = engine.generate([ids for _, ids in part], config.n_filter, config.sampling)
        for (problem, _), paths in zip(part, groups):
            correct = [grade(_text(engine, p.token_ids), problem).correct for p in paths]
            n_correct = int(sum(correct))
            tokens["filter"] += sum(p.generated_tokens for p in paths)
            filter_log.append({
                "problem_id": problem.id, "n_correct": n_correct, "n": len(paths), "kept": in_band(n_correct, config),
                "paths": [{"sample_index": p.sample_index, "token_ids": p.token_ids[: max(config.prefix_lens)],
                           "length": p.generated_tokens, "correct": bool(c)} for p, c in zip(paths, correct)],
            })
        bar(f"filter {len(done) + len(filter_log)}/{len(todo)} problems")
        if report:
            report(tokens)
    filter_log.close()
    mine = {p.id for p, _ in todo}
    filtered = {r["problem_id"]: r for r in _read_logs(out_dir, "filter") if r["problem_id"] in mine}

    # 2. prefixes of kept problems, 3. Monte Carlo rollouts
    by_id = {p.id: (p, ids) for p, ids in todo}
    units = []
    for problem, _ in todo:
        rec = filtered.get(problem.id)
        if rec is None or not rec["kept"]:
            continue
        for position, length in enumerate(config.prefix_lens):
            paths = [q for q in rec["paths"] if q["length"] > length]  # ends after L: a real prefix
            for q in prefix_paths(paths, config.max_prefixes_per_problem, position):
                units.append((problem.id, q, length))
    done = {_label_key(r) for r in _read_logs(out_dir, "labels")}
    label_log = JsonlLog(out_dir / "logs" / f"labels-{worker}.jsonl", key=_label_key)
    units = [u for u in units if f"{u[0]}|{u[1]['sample_index']}|{u[2]}" not in done]
    # One prefix length per engine call (one max_new_tokens); the rollout seed goes per prompt.
    batches = []
    for _, group in itertools.groupby(sorted(units, key=_order), key=lambda unit: unit[2]):
        group = list(group)
        batches += [group[i : i + config.batch_prefixes] for i in range(0, len(group), config.batch_prefixes)]
    for part in batches:
        length = part[0][2]
        contexts = [by_id[pid][1] + q["token_ids"][:length] for pid, q, _ in part]
        seeds = [rollout_seed(config.sampling.seed, q["sample_index"]) for _, q, _ in part]
        rollout = config.sampling.with_(max_new_tokens=max(1, config.sampling.max_new_tokens - length))
        groups = engine.generate(contexts, config.k_rollouts, rollout, seeds=seeds)
        records = []
        for (pid, q, length), context, conts, seed in zip(part, contexts, groups, seeds):
            problem, prompt_ids = by_id[pid]
            prefix = q["token_ids"][:length]
            wins = sum(grade(_text(engine, prefix + c.token_ids), problem).correct for c in conts)
            spent = sum(c.generated_tokens for c in conts)
            tokens["rollouts"] += spent
            records.append({
                "problem_id": pid, "sample_index": q["sample_index"], "prefix_len": length,
                "prefix_token_ids": context, "prompt_len": len(prompt_ids),
                "Soft_label": wins / len(conts), "Hard_label": int(q["correct"]), "n_rollouts": len(conts),
                "rollout_tokens": spent, "rollout_seed": seed,
                "split": split_of(pid, config.val_fraction, config.seed), "model": config.model, "seed": config.seed,
            })
        label_log.extend(records)
        bar(f"rollouts {len(done) + len(label_log)} prefixes, {tokens['rollouts']:,} tokens")
        if report:
            report(tokens)
        if on_batch:
            on_batch(len(done) + len(label_log))
    label_log.close()


def _worker_main(factory: Callable[[], Engine], todo: list[tuple[Problem, list[int]]], config: LabelConfig,
                 out_dir: Path, worker: int) -> None:
    """One spawned worker: builds its engine, does its shard, reports tokens to a JSON file."""
    status = out_dir / "logs" / f"status-{worker}.json"
    _construct(factory(), todo, config, out_dir, worker, lambda message: None,
               report=lambda tokens: atomic_write_json(status, tokens))


def _run_workers(factory: Callable[[], Engine], todo: list[tuple[Problem, list[int]]], config: LabelConfig,
                 out_dir: Path, workers: int, bar: Callable[[str], None]) -> None:
    """Shard ``todo`` round-robin over spawned processes; wait, showing their summed progress."""
    for old in (out_dir / "logs").glob("status-*.json"):
        old.unlink()

    def show_progress() -> None:
        totals = {"filter": 0, "rollouts": 0}
        for path in (out_dir / "logs").glob("status-*.json"):
            try:
                for k, v in json.loads(path.read_text()).items():
                    totals[k] = totals.get(k, 0) + v
            except (OSError, ValueError):
                pass  # being replaced right now
        bar(f"{workers} workers: {totals['filter'] + totals['rollouts']:,} tokens")

    jobs = [(factory, todo[w::workers], config, out_dir, w) for w in range(workers)]
    run_in_processes(_worker_main, jobs, workers, on_tick=show_progress)


def ensure_validation_problem(labels: list[dict], config: LabelConfig) -> None:
    """With few labelled problems the hash split can leave validation empty (training then has no
    model selection): the last problem in order goes to validation instead. In place; a no-op
    whenever the hash split already has a validation problem, or with ``val_fraction=0``."""
    problems = list(dict.fromkeys(r["problem_id"] for r in labels))
    if config.val_fraction == 0 or len(problems) < 2 or any(r["split"] == "val" for r in labels):
        return
    for r in labels:
        if r["problem_id"] == problems[-1]:
            r["split"] = "val"


def write_card(out_dir: Path, config: LabelConfig, problem_order: Sequence[str], seconds: float) -> dict[str, Any]:
    """Merge the workers' logs in problem order; write the splits and the dataset card.

    Token counts are summed from the records, so they are exact however often the run was
    killed and resumed; ``seconds`` adds this run's wall time to the previous card's.
    """
    rank = {pid: i for i, pid in enumerate(problem_order)}
    filtered = sorted(_read_logs(out_dir, "filter"), key=lambda r: rank.get(r["problem_id"], len(rank)))
    labels = sorted(_read_logs(out_dir, "labels"),
                    key=lambda r: (rank.get(r["problem_id"], len(rank)), r["prefix_len"], r["sample_index"]))
    ensure_validation_problem(labels, config)
    for name, rows in (("filter", filtered), ("labels", labels), ("train", [r for r in labels if r["split"] == "train"]),
                       ("val", [r for r in labels if r["split"] == "val"])):
        atomic_write_text(out_dir / f"{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    previous = json.loads((out_dir / "card.json").read_text()) if (out_dir / "card.json").exists() else {}
    card = {
        "config": asdict(config),
        "problems": len(filtered),
        "problems_kept": sum(r["kept"] for r in filtered),
        "pass_counts": [r["n_correct"] for r in filtered],
        "prefixes": len(labels),
        "prefixes_train": sum(r["split"] == "train" for r in labels),
        "prefixes_val": sum(r["split"] == "val" for r in labels),
        "problems_train": len({r["problem_id"] for r in labels if r["split"] == "train"}),
        "problems_val": len({r["problem_id"] for r in labels if r["split"] == "val"}),
        "mean_soft_label": sum(r["Soft_label"] for r in labels) / max(1, len(labels)),
        "mean_hard_label": sum(r["Hard_label"] for r in labels) / max(1, len(labels)),
        "tokens_generated": {"filter": sum(q["length"] for r in filtered for q in r["paths"]),
                             "rollouts": sum(r.get("rollout_tokens", 0) for r in labels)},
        "seconds": previous.get("seconds", 0.0) + seconds,
    }
    atomic_write_json(out_dir / "card.json", card)
    return card


def _progress(enabled: bool) -> Callable[[str], None]:
    if not enabled:
        return lambda message: None
    from tqdm.auto import tqdm

    bar = tqdm(total=0, bar_format="{desc}", leave=True)
    return lambda message: (bar.set_description_str(message), bar.refresh())
