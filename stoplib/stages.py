"""The pipeline's stages as cached functions of a ``RunConfig`` (what notebooks and the CLI call).

Each stage stores its output under ``results_root/<stage>/<hash of what it depends on>/`` and
returns it at once when it is already complete (``force=True`` recomputes). Long stages
resume after an interruption.
"""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .bank import Bank, build_bank, copy_problem, load_bank
from .config import RunConfig, engine_batch
from .engines import Engine, make_engine
from .labels import LabelConfig, _label_key, build_labels, write_card
from .models import context_of, file_hash, model_identity
from .problems import Problem
from .stop import StopConfig, StopScorer
from .store import LOCK_FILE, JsonlLog, Store, atomic_write_json, config_hash, read_json, read_jsonl, run_lock
from .tasks import load_task_or_file
from .train import TrainConfig, init_distributed, load_label_records, train_stop

#: The STOP variants, named as their signals (taxonomy.DISPLAY_NAMES holds their labels): STOP,
#: without the adapter (only the head trains, on the frozen model), and trained on hard labels.
VARIANTS = ("stop", "stop_probe", "stop_hard")


def eval_problems(config: RunConfig) -> list[Problem]:
    """Held-out evaluation problems (the "eval" split of a generated task, or a benchmark / file)."""
    return load_task_or_file(config.benchmark, "eval", config.n_eval_problems or None, config.seed)


def train_problems(config: RunConfig) -> list[Problem]:
    """Problems for dataset construction: the "train" split of a generated task, or a file."""
    if config.train_problems is None:
        raise ValueError(f"no training problems for model {config.model!r}: pass train_problems=<file> (the paper "
                         "uses AIME 1984-2023 and GPQA without Diamond), or a generated task such as 'arithmetic'")
    return load_task_or_file(config.train_problems, "train", config.n_train_problems or None, config.seed)


def use_threads(config: RunConfig) -> None:
    """The model preset's torch threads (the organism: 1; extra threads only contend)."""
    if config.threads:
        torch.set_num_threads(config.threads)


def engine_for(config: RunConfig, **kwargs: Any) -> Engine:
    """The sampling engine of ``config`` (vLLM gets the config's tensor / pipeline parallel sizes)."""
    use_threads(config)
    if config.engine == "hf" and config.attn_implementation:
        kwargs.setdefault("attn_implementation", config.attn_implementation)
    if config.engine == "vllm":
        kwargs.setdefault("tensor_parallel_size", config.tensor_parallel_size)
        kwargs.setdefault("pipeline_parallel_size", config.pipeline_parallel_size)
    return make_engine(config.engine, config.model_path, batch_size=config.batch_size, **kwargs)


def prompts_for(problems: list[Problem], tokenizer: Any, config: RunConfig) -> list[list[int]]:
    return [config.prompt.ids(p, tokenizer) for p in problems]


def vocab_size(config: RunConfig) -> int:
    """The model's vocabulary size (rows of its output layer), from its config."""
    from transformers import AutoConfig

    model_config = AutoConfig.from_pretrained(config.model_path)
    return int(getattr(model_config.get_text_config(decoder=True), "vocab_size"))


def check_context(config: RunConfig, problems: Sequence[Problem], prompts: Sequence[Sequence[int]]) -> None:
    """The longest prompt, the prefix and the [STOP] tokens must fit the model's maximum context
    (read from the loaded model's config, so it holds for hub models too)."""
    from transformers import AutoConfig

    if not prompts:
        return
    context = context_of(AutoConfig.from_pretrained(config.model_path).to_dict())
    longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
    need = len(prompts[longest]) + config.prefix_len + config.stop.num_tokens
    if context is not None and need > context:
        raise ValueError(f"prefix_len={config.prefix_len}: the prompt of problem {problems[longest].id!r} "
                         f"({len(prompts[longest])} tokens) + the prefix + {config.stop.num_tokens} [STOP] tokens "
                         f"= {need} tokens exceed the maximum context of model {config.model!r} ({context} "
                         "tokens): lower prefix_len or use shorter problems")


def load_tokenizer(config: RunConfig) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(config.model_path)


def _fresh(directory: Path, force: bool) -> None:
    if force and directory.exists():
        for child in directory.iterdir():
            if child.name not in ("config.json", LOCK_FILE):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


# ---------------------------------------------------------------- cache keys
_INPUTS: dict[str, str] = {}


def inputs_hash(problems: Sequence[Problem], prompts: Sequence[Sequence[int]]) -> str:
    """Content hash of problems (question, answer, kind, ...) and their prompt token ids: it changes
    with the problem file, the prompt template, the few-shot examples and the tokenizer."""
    rows = [[p.to_dict(), list(ids)] for p, ids in zip(problems, prompts)]
    return config_hash(rows)


def _inputs(config: RunConfig, which: str) -> str:
    """``inputs_hash`` of the train or eval problems of ``config``, computed once per process."""
    source = config.train_problems if which == "train" else config.benchmark
    content = file_hash(source) if source and Path(source).is_file() else source  # an edited file recomputes
    memo = config_hash({"which": which, "config": config, "model": model_identity(config.model_path),
                        "source": content})
    if memo not in _INPUTS:
        problems = train_problems(config) if which == "train" else eval_problems(config)
        _INPUTS[memo] = inputs_hash(problems, prompts_for(problems, load_tokenizer(config), config))
    return _INPUTS[memo]


def labels_key(config: RunConfig) -> dict[str, Any]:
    """What the labels depend on: the model's content, the engine, the problems and prompts, the
    construction's settings (never a path)."""
    return {"model": model_identity(config.model_path), "engine": config.engine,
            "inputs": _inputs(config, "train"), "labels": config.labels}


def bank_key(config: RunConfig) -> dict[str, Any]:
    return {"model": model_identity(config.model_path), "engine": config.engine, "inputs": _inputs(config, "eval"),
            "n_paths": config.n_paths, "sampling": config.sampling}


# ---------------------------------------------------------------- sharding by problem
Shard = tuple[int, int]  # (i, n): the i-th of n shards, 0 <= i < n


def parse_shard(text: str) -> Shard:
    """``"i/n"`` (0 <= i < n, as ``$SLURM_ARRAY_TASK_ID/<array size>``) -> ``(i, n)``."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text), re.ASCII)
    if match is None or not 0 <= int(match[1]) < int(match[2]):
        raise ValueError(f"shard {text!r}: expected i/n with 0 <= i < n (the i-th of n shards), e.g. 0/4 ... 3/4")
    return int(match[1]), int(match[2])


def check_shard(shard: Any) -> Shard:
    """A valid ``(i, n)`` shard, or ValueError naming the value."""
    if (not isinstance(shard, (tuple, list)) or len(shard) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in shard)
            or not 0 <= shard[0] < shard[1]):
        raise ValueError(f"shard {shard!r}: expected (i, n) with 0 <= i < n (the i-th of n shards)")
    return int(shard[0]), int(shard[1])


def shard_positions(count: int, shard: Shard | None) -> list[int]:
    """Positions in a problem list of ``count`` problems that ``shard`` builds: those congruent to
    i modulo n (all of them without a shard). Depends only on the list, never on timing."""
    if shard is None:
        return list(range(count))
    i, n = check_shard(shard)
    return list(range(i, count, n))


def _shard_key(key: dict[str, Any], shard: Shard | None) -> dict[str, Any]:
    """A shard's store key: the whole run's key plus the shard (unchanged without one)."""
    return key if shard is None else {**key, "shard": list(check_shard(shard))}


def _check_shards(stage: str, command: str, directories: list[Path], done: str) -> None:
    """Every shard directory holds a finished run (its ``done`` file), or an error naming the missing."""
    missing = [i for i, d in enumerate(directories) if not (d / done).exists()]
    if missing:
        n = len(directories)
        raise FileNotFoundError(f"cannot merge the {stage}: shard(s) {', '.join(f'{i}/{n}' for i in missing)} of {n} "
                                f"are not complete (run `stoplib {command} --shard i/{n}` for each, with the same "
                                f"options); first missing: {directories[missing[0]]}")


def _shard_dirs(config: RunConfig, stage: str, key: dict[str, Any], shards: int) -> list[Path]:
    from . import params

    params.positive_int("shards", shards)
    return [Store(config.results_root).run_dir(stage, _shard_key(key, (i, shards))) for i in range(shards)]


# ---------------------------------------------------------------- dataset construction
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


# ---------------------------------------------------------------- STOP training
def variant_configs(config: RunConfig, variant: str) -> tuple[StopConfig, TrainConfig]:
    """The STOP and training configs of a variant: "stop", "stop_probe" (w/o adapter), "stop_hard"
    (hard labels). The store key of the run is built from these configs, not from the name."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {VARIANTS}")
    stop, train = config.stop, config.train
    if variant == "stop_probe":
        stop = StopConfig(**{**stop.__dict__, "use_adapter": False})
    if variant == "stop_hard":
        train = TrainConfig(**{**train.__dict__, "hard_labels": True})
    return stop, train


def stop_stage(config: RunConfig, variant: str = "stop", *, force: bool = False,
               progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Train (or load) a STOP variant on the labels; returns (best checkpoint dir, summary)."""
    labels_dir, _ = labels_stage(config, progress=progress)
    return _training_stage(_trained_dir(config, variant), "STOP training", force,
                           lambda directory: _train_variant(config, variant, directory, labels_dir, progress))


def _training_stage(directory: Path, description: str, force: bool,
                    train: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """A cached training run: ``train(directory)`` returns its summary, written last
    (``summary.json``: the run is complete). Under a data parallel launch (``accelerate
    launch``, ``torchrun``, :func:`stoplib.parallel.run_process_group`) every process trains on
    its rows of each batch, and process 0 alone holds the run's lock and writes."""
    rank, world = init_distributed()
    if world == 1 and not force and (directory / "summary.json").exists():
        return directory / "best", read_json(directory / "summary.json")
    with run_lock(directory, description) if rank == 0 else contextlib.nullcontext():
        if rank == 0:
            _fresh(directory, force)
        done = [(directory / "summary.json").exists() if rank == 0 else None]
        if world > 1:
            import torch.distributed as dist

            dist.broadcast_object_list(done, src=0)
        if not done[0]:
            summary = train(directory)
            if rank == 0:
                atomic_write_json(directory / "summary.json", summary)
        if world > 1:
            import torch.distributed as dist

            dist.barrier()
    return directory / "best", read_json(directory / "summary.json")


def _train_variant(config: RunConfig, variant: str, directory: Path, labels_dir: Path,
                   progress: bool) -> dict[str, Any]:
    """Train a STOP variant on the labels in ``labels_dir`` into ``directory``; returns its summary."""
    from .engines.hf import load_model_and_tokenizer

    stop, train = variant_configs(config, variant)
    use_threads(config)
    base, tokenizer = load_model_and_tokenizer(config.model_path)
    torch.manual_seed(train.seed)  # the LoRA, [STOP] and head initialization
    scorer = StopScorer(base, tokenizer, stop)
    train_records = load_label_records(labels_dir / "train.jsonl")
    val_records = load_label_records(labels_dir / "val.jsonl")
    result = train_stop(scorer, train_records, val_records, train, directory, progress=progress)
    return {"variant": variant, "best_epoch": result.best_epoch, "history": result.history,
            "n_train": len(train_records), "n_val": len(val_records)}


_BASE_MODELS: dict[str, tuple[Any, Any]] = {}


def shared_base_model(config: RunConfig) -> tuple[Any, Any]:
    """(model, tokenizer) of ``config``'s model, loaded once per process: every STOP module loaded
    through :func:`load_stop` is a named adapter on this one copy (five STOP variants of a 7B
    model cost one 7B model, not five)."""
    from .engines.hf import load_model_and_tokenizer

    key = str(Path(config.model_path).resolve()) if Path(config.model_path).exists() else config.model_path
    if key not in _BASE_MODELS:
        use_threads(config)
        _BASE_MODELS[key] = load_model_and_tokenizer(config.model_path)
    return _BASE_MODELS[key]


def load_stop(config: RunConfig, variant: str = "stop", base_model: Any = None, tokenizer: Any = None) -> StopScorer:
    """The trained scorer of a variant (trains it first if needed), on ``base_model`` if given,
    else on the process's shared copy of the model (:func:`shared_base_model`)."""
    use_threads(config)
    best, _ = stop_stage(config, variant, progress=False)
    if base_model is None or tokenizer is None:
        base_model, tokenizer = shared_base_model(config)
    return StopScorer.from_pretrained(best, base_model, tokenizer)


# ---------------------------------------------------------------- rollout bank
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


# ---------------------------------------------------------------- Type II verifier
def verifier_stage(config: RunConfig, *, force: bool = False, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """Train (or load) the external text verifier on the same labels as STOP (Type II-retrain)."""
    labels_dir, _ = labels_stage(config, progress=progress)
    return _training_stage(_trained_dir(config, "verifier"), "verifier training", force,
                           lambda directory: _train_verifier(config, directory, labels_dir, progress))


def _train_verifier(config: RunConfig, directory: Path, labels_dir: Path, progress: bool) -> dict[str, Any]:
    from .signals.type2 import TextVerifier
    from .train import train_verifier

    use_threads(config)
    torch.manual_seed(config.train.seed)
    verifier = TextVerifier.from_base(config.model_path, verifier_config(config))
    result = train_verifier(verifier, load_label_records(labels_dir / "train.jsonl"),
                            load_label_records(labels_dir / "val.jsonl"), verifier_train_config(config), directory,
                            tokenizer=load_tokenizer(config), progress=progress)
    return {"best_epoch": result.best_epoch, "history": result.history}


def verifier_train_config(config: RunConfig) -> TrainConfig:
    return replace(config.train, epochs=config.verifier_epochs)


def verifier_config(config: RunConfig) -> Any:
    from .signals.type2 import VerifierConfig

    return VerifierConfig(lora_r=config.stop.lora_r, lora_alpha=config.stop.lora_alpha, base_model=config.model_path)


# ---------------------------------------------------------------- several trainings at once
TRAINABLE = VARIANTS + ("verifier",)


def _trained_dir(config: RunConfig, what: str) -> Path:
    """Store directory of a STOP variant or of the verifier (created if missing)."""
    if what == "verifier":  # the base model is in the labels' key (by content, not by path)
        key = {"labels": labels_key(config), "verifier": replace(verifier_config(config), base_model=""),
               "train": verifier_train_config(config)}
        return Store(config.results_root).run_dir("verifier", key)
    stop, train = variant_configs(config, what)
    key = {"labels": labels_key(config), "stop": replace(stop, base_model=""), "train": train}
    return Store(config.results_root).run_dir("stop", key)


def is_trained(config: RunConfig, what: str) -> bool:
    """Whether the store already holds the finished training of ``what`` (a variant or "verifier")."""
    return (_trained_dir(config, what) / "summary.json").exists()


def _train(config: RunConfig, what: str) -> None:
    if what == "verifier":
        verifier_stage(config, progress=False)
    else:
        stop_stage(config, what, progress=False)


def train_parallel(jobs: Sequence[tuple[RunConfig, str]], workers: int | None = None) -> list[tuple[RunConfig, str]]:
    """Train STOP variants and/or the verifier (``what`` in :data:`TRAINABLE`), several at once.

    Each STOP job is an ordinary cached stage run in its own single-threaded process (the
    organism gains nothing from more threads, so two trainings on two cores take the time of
    one). The verifier, the longest, trains first, data parallel over ``workers`` processes
    (:mod:`stoplib.distributed`: the same batches and dropout masks as one process, so the same
    training up to float rounding). Finished jobs are skipped. The labels are built first, in
    this process. ``workers`` defaults to the first config's ``workers`` (2 for the organism on
    CPU, 1 elsewhere, where the jobs then run one after another in this process). Returns the
    jobs that were run.
    """
    for _, what in jobs:
        if what not in TRAINABLE:
            raise ValueError(f"unknown training {what!r}; choose from {TRAINABLE}")
    todo = [(config, what) for config, what in jobs if not is_trained(config, what)]
    if not todo:
        return []
    distinct = {config_hash(labels_key(c)): c for c, _ in todo}
    for config in distinct.values():  # before the workers, which would otherwise race to build them
        labels_stage(config, progress=False)
    workers = workers or todo[0][0].workers
    if workers <= 1:
        for config, what in todo:
            _train(config, what)
        return todo
    from .parallel import run_in_processes, run_process_group

    threads = todo[0][0].threads
    for job in [job for job in todo if job[1] == "verifier"]:  # the longest: data parallel on every core
        run_process_group(_train, job, workers, threads=threads or 1)
    rest = [job for job in todo if job[1] != "verifier"]
    if len(rest) == 1:
        _train(*rest[0])
    elif rest:
        run_in_processes(_train, rest, workers, threads=threads)
    return todo
