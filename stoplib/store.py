"""Artifact store shared by every pipeline step.

* ``config_hash`` names a result by its configuration; ``Store.run_dir`` gives it a folder;
  ``run_lock`` holds that folder while one process builds it.
* ``atomic_write_*`` never leave a half-written file behind (:mod:`stoplib.atomic_files`).
* ``JsonlLog`` is an append-only record log that resumes after a crash: a record is
  committed exactly when its line (newline included) is on disk (:mod:`stoplib.jsonl_log`).
* ``provenance`` / ``record_metrics`` say what produced a result (:mod:`stoplib.provenance`).

Only the standard library and numpy are imported here.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterator

from .atomic_files import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, read_text
from .jsonable import canonical_json, config_hash, to_jsonable
from .jsonl_log import JsonlLog, read_jsonl
from .provenance import hardware, load_metrics, provenance, record_metrics, write_provenance

try:  # POSIX only; without it run_lock does not lock.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"

__all__ = [
    "read_text",
    "run_lock",
    "config_hash",
    "to_jsonable",
    "Store",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "read_json",
    "JsonlLog",
    "read_jsonl",
    "provenance",
    "write_provenance",
    "hardware",
    "record_metrics",
    "load_metrics",
]


@contextlib.contextmanager
def run_lock(directory: str | Path, what: str = "run") -> Iterator[Path]:
    """Hold the run directory ``directory`` for this process while a stage builds it.

    A second process that builds the same run waits (saying so) until the first is done, instead
    of interleaving its records with the first one's; it then finds the run complete. The lock is
    an ``flock`` on ``directory/.lock``, released when the holder ends, however it ends. POSIX
    only; elsewhere nothing is locked.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover
        yield directory
        return
    with open(directory / LOCK_FILE, "a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            print(f"[stoplib] {directory} ({what}) is being built by {holder}: waiting for it to finish",
                  file=sys.stderr, flush=True)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {platform.node()}")
        f.flush()
        yield directory


class Store:
    """Results laid out as ``root/<step>/<config_hash>/`` with the config saved beside them."""

    def __init__(self, root: str | Path = "results") -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"results root {self.root} is a file, not a directory")

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def _dir(self, step: str, config: Any) -> Path:
        if not step or step in (".", "..") or "/" in step or "\\" in step:
            raise ValueError(f"invalid step name {step!r}")
        return self.root / step / config_hash(config)

    def run_dir(self, step: str, config: Any) -> Path:
        """Folder for ``step`` run with ``config`` (created); writes ``config.json`` if missing.

        An existing ``config.json`` that differs from ``config`` raises ValueError (a hash
        collision or a hand-edited folder), so a folder never mixes two configurations.
        """
        d = self._dir(step, config)
        d.mkdir(parents=True, exist_ok=True)
        cfg_path = d / "config.json"
        if cfg_path.exists():
            if canonical_json(read_json(cfg_path)) != canonical_json(config):
                raise ValueError(f"{cfg_path} holds a different config than the one hashed to {d.name}")
        else:
            atomic_write_json(cfg_path, config)
        return d

    def path(self, step: str, config: Any, name: str) -> Path:
        """Path of artifact ``name`` inside ``run_dir(step, config)`` (folder created)."""
        return self.run_dir(step, config) / name

    def exists(self, step: str, config: Any, name: str) -> bool:
        """Whether artifact ``name`` of ``step`` with ``config`` exists (creates nothing)."""
        return (self._dir(step, config) / name).exists()
