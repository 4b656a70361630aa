"""The training stages: STOP variants and the text verifier trained on the labels, each a cached
run keyed by its configs and the labels' key; several at once (``train_parallel``); a trained
STOP module loaded on one shared copy of the base model (``load_stop``)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from .config import RunConfig
from .stage_engine import load_tokenizer, use_threads
from .stage_keys import labels_key
from .stage_labels import labels_stage
from .stage_runs import _fresh
from .stop import StopConfig, StopScorer
from .store import Store, atomic_write_json, config_hash, read_json, run_lock
from .train import TrainConfig, init_distributed, load_label_records, train_stop

#: The STOP variants, named as their signals (taxonomy.DISPLAY_NAMES holds their labels): STOP,
#: without the adapter (only the head trains, on the frozen model), and trained on hard labels.
VARIANTS = ("stop", "stop_probe", "stop_hard")


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
    launch``, ``torchrun``) every process trains on its rows of each batch, and process 0 alone
    holds the run's lock and writes."""
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

    Each job is an ordinary cached stage run in a single-threaded worker process (the organism
    gains nothing from more threads, so two trainings on two cores take the time of one), taken
    in order: put the longest (the verifier) first. Finished jobs are skipped. The labels are
    built first, in this process. ``workers`` defaults to the first config's ``workers`` (2 for
    the organism on CPU, 1 elsewhere, where the jobs then run one after another in this process).
    Returns the jobs that were run.

    (Training the verifier data parallel on both cores instead, then the STOP jobs, takes as long
    on the organism — 404 against 402 s for notebook 03's trainings — and needs its batches in a
    fixed number of parts, ``train_stop(parts=2)``, which changes its float rounding.)
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
    if workers <= 1 or len(todo) == 1:
        for config, what in todo:
            _train(config, what)
        return todo
    from .parallel import run_in_processes

    run_in_processes(_train, todo, workers, threads=todo[0][0].threads)
    return todo
