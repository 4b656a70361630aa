"""A stage's run directory in the store: cleared for ``force=True``, and split by problem into
shards (each shard a store entry of its own, merged once every shard is finished)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from .config import RunConfig
from .store import LOCK_FILE, Store


def _fresh(directory: Path, force: bool) -> None:
    if force and directory.exists():
        for child in directory.iterdir():
            if child.name not in ("config.json", LOCK_FILE):
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


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
