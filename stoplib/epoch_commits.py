"""Crash-safe training epochs: each epoch is committed atomically, and a killed run resumes.

A training run directory holds ``epochs/NNNN/`` (``checkpoint/`` as written by
``save_pretrained``, ``train_state.pt``: optimizer and scheduler, ``history.json``) for the last
committed epoch and the best one, and ``progress.json``, the commit record naming both. An epoch
is written into ``epochs/.NNNN.tmp/``, flushed to disk and renamed; rewriting ``progress.json``
(atomically) commits it; ``last`` and ``best`` are symbolic links derived from it. A run killed
at any moment resumes from the last committed epoch, and what was written after it is discarded.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from .store import atomic_write_json, read_json

PROGRESS = "progress.json"
# Test-only: called with the name of each step of a commit (tests kill the run there).
_COMMIT_HOOK: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if _COMMIT_HOOK is not None:
        _COMMIT_HOOK(name)


def config_key(config: Any) -> str:
    """The training configuration as ``progress.json`` records it (a run resumes only under it)."""
    return json.dumps(asdict(config), sort_keys=True)


def epoch_dir(out_dir: Path, epoch: int) -> Path:
    """Directory of epoch ``epoch`` of the run in ``out_dir``."""
    return out_dir / "epochs" / f"{epoch:04d}"


def _fsync_tree(directory: Path) -> None:
    """Flush every file below ``directory`` and the directories themselves to disk."""
    for path in sorted(directory.rglob("*"), reverse=True) + [directory]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _link(link: Path, target: str) -> None:
    """Point the symbolic link ``link`` at ``target`` (relative), replacing it atomically."""
    tmp = link.with_name(f".{link.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    if link.is_dir() and not link.is_symlink():  # a checkpoint directory of an older layout
        shutil.rmtree(link)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _tidy(out_dir: Path, keep: set[int]) -> None:
    """Remove every epoch directory but ``keep``, and unfinished writes."""
    for path in (out_dir / "epochs").iterdir():
        if not (path.name.isdigit() and int(path.name) in keep):
            shutil.rmtree(path)


def _disk_error(out_dir: Path, err: OSError) -> OSError:
    if err.errno == errno.ENOSPC:
        return OSError(err.errno, f"no space left on the device of {out_dir} while saving a training epoch; "
                       "free some space and run again: training resumes from the last complete epoch")
    return err


def commit_epoch(out_dir: Path, epoch: int, best_epoch: int, config_key: str, scorer: Any,
                 state: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Write epoch ``epoch`` (the scorer's weights, optimizer state, history) and commit it."""
    epochs = out_dir / "epochs"
    tmp = epochs / f".{epoch:04d}.tmp"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        scorer.save_pretrained(tmp / "checkpoint")
        _step("checkpoint")
        torch.save(state, tmp / "train_state.pt")
        _step("train_state")
        (tmp / "history.json").write_text(json.dumps(history, indent=2))
        _fsync_tree(tmp)
        _step("written")
        final = epoch_dir(out_dir, epoch)
        if final.exists():  # written by a run killed before it committed this epoch
            shutil.rmtree(final)
        os.replace(tmp, final)
        _step("renamed")
        atomic_write_json(out_dir / PROGRESS, {"epoch": epoch, "best_epoch": best_epoch, "config": config_key})
        _step("committed")
    except OSError as err:
        raise _disk_error(out_dir, err) from err
    _finish(out_dir, epoch, best_epoch)


def _finish(out_dir: Path, epoch: int, best_epoch: int) -> None:
    """Derived state of a committed epoch: the links and the removal of everything else."""
    _link(out_dir / "last", f"epochs/{epoch:04d}/checkpoint")
    _link(out_dir / "best", f"epochs/{best_epoch:04d}/checkpoint")
    _step("linked")
    _tidy(out_dir, {epoch, best_epoch})


def resume_point(out_dir: Path, config_key: str) -> dict[str, Any] | None:
    """The last committed epoch of the run in ``out_dir`` (None: nothing committed), after
    discarding whatever a killed run wrote past it."""
    path = out_dir / PROGRESS
    if not path.exists():
        if (out_dir / "epochs").exists():
            shutil.rmtree(out_dir / "epochs")  # a first epoch that never committed
        return None
    try:
        committed = read_json(path)
        int(committed["epoch"]), int(committed["best_epoch"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); remove {out_dir} (or run with --force) "
                         "to train from scratch") from None
    if committed.get("config") != config_key:
        raise ValueError(f"{out_dir} holds a training run with another configuration; use a new directory "
                         "or remove it")
    _finish(out_dir, int(committed["epoch"]), int(committed["best_epoch"]))
    return committed


def restore_epoch(out_dir: Path, committed: dict[str, Any], scorer: Any, optimizer: Any,
                  scheduler: Any) -> list[dict[str, Any]]:
    """Load the committed epoch into ``scorer``, ``optimizer`` and ``scheduler``; returns its history."""
    directory = epoch_dir(out_dir, committed["epoch"])
    try:
        state = torch.load(directory / "train_state.pt", map_location="cpu", weights_only=True)
        scorer.load_weights(directory / "checkpoint")
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        return json.loads((directory / "history.json").read_text())
    except Exception as err:  # files changed or damaged after their commit
        raise ValueError(f"{directory}: the committed epoch {committed['epoch']} cannot be resumed "
                         f"({type(err).__name__}: {str(err)[:200]}); remove {out_dir} (or run with --force) "
                         "to train from scratch") from err
