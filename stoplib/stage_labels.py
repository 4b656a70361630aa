"""The labels stage: the MC-labelled prefix dataset STOP trains on, built whole or in shards by
problem, the merge of finished shards, and the checks that the dataset can be learned from."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

from .config import RunConfig
from .engines import Engine
from .labels import LabelConfig, _label_key, build_labels, write_card
from .stage_engine import engine_for, load_tokenizer
from .stage_inputs import check_context, eval_problems, prompts_for, train_problems
from .stage_keys import labels_key
from .stage_runs import Shard, _check_shards, _fresh, _shard_dirs, _shard_key, shard_positions
from .store import JsonlLog, Store, atomic_write_json, read_json, read_jsonl, run_lock


def label_config(config: RunConfig) -> LabelConfig:
    """The construction's settings; with one source for training and evaluation problems, the
    evaluation problems are excluded (never labelled)."""
    labels = config.labels
    if config.train_problems == config.benchmark:  # one source: never label an evaluation problem
        held_out = {p.id for p in eval_problems(config)}
        labels = replace(labels, exclude_ids=tuple(sorted(held_out)))
    return labels


def labels_stage(config: RunConfig, *, engine: Engine | None = None, force: bool = False,
                 progress: bool = True, shard: Shard | None = None) -> tuple[Path, dict[str, Any]]:
    """Build (or load) the MC-labelled prefix dataset; returns (directory, card).

    ``shard=(i, n)`` builds only the problems at positions i, i+n, i+2n, ... of the problem list,
    into a store entry of its own (its key is the run's plus the shard); :func:`merge_labels`
    assembles n finished shards into exactly the unsharded run's files.
    """
    directory = Store(config.results_root).run_dir("labels", _shard_key(labels_key(config), shard))
    card_path = directory / "card.json"
    if not force and card_path.exists() and read_json(card_path).get("complete"):
        return directory, read_json(card_path)
    with run_lock(directory, "labels"):
        _fresh(directory, force)
        card_path = directory / "card.json"
        if card_path.exists() and read_json(card_path).get("complete"):
            return directory, read_json(card_path)
        problems = train_problems(config)
        labels = label_config(config)
        if engine is None and config.workers > 1:  # each worker process builds its own engine
            source: Any = functools.partial(engine_for, config)
            tokenizer = load_tokenizer(config)
        else:
            source = engine or engine_for(config)
            tokenizer = source.tokenizer
        workers = config.workers if engine is None else 1
        prompts = prompts_for(problems, tokenizer, config)
        check_context(config, problems, prompts)
        mine = shard_positions(len(problems), shard)
        card = build_labels(source, [problems[p] for p in mine], [prompts[p] for p in mine], labels, directory,
                            workers=workers, progress=progress)
        if shard is None:
            check_dataset(card, config)  # a shard alone may lack validation problems: checked when merged
        else:
            card["shard"] = list(shard)
        card["complete"] = True
        atomic_write_json(card_path, card)
        return directory, card


def merge_labels(config: RunConfig, shards: int, *, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Assemble the ``shards`` finished shards of the labels (``labels_stage(shard=(i, shards))``)
    into the unsharded run's store entry: the same files, byte for byte, as one process writes
    (the card's ``seconds`` is the shards' sum). Returns (directory, card) as ``labels_stage``."""
    key = labels_key(config)
    parts = _shard_dirs(config, "labels", key, shards)
    directory = Store(config.results_root).run_dir("labels", key)
    card_path = directory / "card.json"
    if not force and card_path.exists() and read_json(card_path).get("complete"):
        return directory, read_json(card_path)
    _check_shards("labels", "label", parts, "card.json")
    with run_lock(directory, "labels"):
        _fresh(directory, True)
        logs = directory / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for i, part in enumerate(parts):  # the records of every shard's workers, by key
            for path in sorted((part / "logs").glob("*-*.jsonl")):
                name, worker = path.stem.split("-", 1)
                key_of = "problem_id" if name == "filter" else _label_key
                with JsonlLog(logs / f"{name}-shard{i}of{shards}-{worker}.jsonl", key=key_of) as log:
                    log.extend(read_jsonl(path))
        labels = label_config(config)
        order = [p.id for p in train_problems(config) if p.id not in set(labels.exclude_ids)]
        seconds = sum(float(read_json(part / "card.json").get("seconds", 0.0)) for part in parts)
        card = write_card(directory, labels, order, seconds)
        check_dataset(card, config)
        card["complete"] = True
        atomic_write_json(card_path, card)
        return directory, card


def check_dataset(card: dict[str, Any], config: RunConfig) -> None:
    """A dataset STOP cannot learn from is an error that names the cause, never a finished stage."""
    where = f"dataset construction for model {config.model!r}"
    if card["problems_kept"] == 0:
        raise ValueError(f"{where}: no problem has between {config.labels.band[0]} and {config.labels.band[1]} of "
                         f"{config.labels.n_filter} paths correct (pass counts {card['pass_counts'][:20]}); the "
                         "problems are too easy or too hard for the model: change train_problems or n_filter")
    if card["prefixes"] == 0:
        raise ValueError(f"{where}: no path of a kept problem is longer than prefix_len={config.prefix_len} "
                         "tokens; lower prefix_len")
    if card["prefixes_train"] == 0 or card["prefixes_val"] == 0:
        raise ValueError(f"{where}: {card['prefixes_train']} training and {card['prefixes_val']} validation "
                         "prefixes; both are needed: raise n_train_problems")
