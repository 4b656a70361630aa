"""The bank stage: N complete paths per evaluation problem, generated once, whole or in shards by
problem, and the merge of finished shards into the unsharded bank."""

from __future__ import annotations

from typing import Any

from .bank import Bank, build_bank, copy_problem, load_bank
from .config import RunConfig, engine_batch
from .engines import Engine
from .stage_engine import engine_for, use_threads
from .stage_inputs import check_context, eval_problems, prompts_for
from .stage_keys import bank_key
from .stage_runs import Shard, _check_shards, _fresh, _shard_dirs, _shard_key, shard_positions
from .store import JsonlLog, Store, atomic_write_json, read_jsonl, run_lock


def bank_stage(config: RunConfig, *, engine: Engine | None = None, force: bool = False,
               progress: bool = True, shard: Shard | None = None) -> Bank:
    """N complete paths per evaluation problem (``config.n_paths``), generated once.

    ``shard=(i, n)`` generates only the problems at positions i, i+n, ... (a store entry of its
    own; the returned bank holds those problems); :func:`merge_bank` assembles n finished shards
    into exactly the unsharded bank.
    """
    use_threads(config)
    directory = Store(config.results_root).run_dir("bank", _shard_key(bank_key(config), shard))
    problems = eval_problems(config)
    mine = shard_positions(len(problems), shard)
    if not force and (directory / "complete.json").exists():
        return load_bank(directory, [problems[p] for p in mine])
    with run_lock(directory, "bank"):
        _fresh(directory, force)
        if (directory / "complete.json").exists():
            return load_bank(directory, [problems[p] for p in mine])
        engine = engine or engine_for(config)
        prompts = prompts_for(problems, engine.tokenizer, config)
        check_context(config, problems, prompts)
        bank = build_bank(engine, [problems[p] for p in mine], [prompts[p] for p in mine], config.n_paths,
                          config.sampling, directory,
                          problems_per_call=max(1, engine_batch(config.batch_size, config.engine) // config.n_paths),
                          progress=progress, indices=mine)
        done: dict[str, Any] = {"problems": len(mine)}
        atomic_write_json(directory / "complete.json", done if shard is None else {**done, "shard": list(shard)})
        return bank


def merge_bank(config: RunConfig, shards: int, *, force: bool = False) -> Bank:
    """Assemble the ``shards`` finished shards of the bank (``bank_stage(shard=(i, shards))``) into
    the unsharded bank's store entry: the same files, byte for byte, as one process writes."""
    key = bank_key(config)
    parts = _shard_dirs(config, "bank", key, shards)
    directory = Store(config.results_root).run_dir("bank", key)
    problems = eval_problems(config)
    if not force and (directory / "complete.json").exists():
        return load_bank(directory, problems)
    _check_shards("bank", "bank", parts, "complete.json")
    with run_lock(directory, "bank"):
        _fresh(directory, True)
        rows = sorted(((row, part) for part in parts for row in read_jsonl(part / "index.jsonl")),
                      key=lambda item: item[0]["index"])
        expected = [(i, p.id) for i, p in enumerate(problems)]
        if [(row["index"], row["problem_id"]) for row, _ in rows] != expected:
            raise ValueError(f"cannot merge the bank: the shards in {parts[0].parent} hold problems "
                             f"{[row['problem_id'] for row, _ in rows][:10]}..., not the {len(problems)} evaluation "
                             "problems once each; rebuild the shards with the same options")
        with JsonlLog(directory / "index.jsonl", key="problem_id") as index:
            for row, part in rows:
                copy_problem(part, directory, row["index"])
                index.append(row)
        atomic_write_json(directory / "complete.json", {"problems": len(problems)})
        return load_bank(directory, problems)
