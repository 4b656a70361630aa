"""Append-only JSONL record logs that resume after a crash.

A record is committed exactly when its line (newline included) is on disk; a torn last line
left by a kill is dropped on the next open.
"""

from __future__ import annotations

import io
import json
import logging
import os
import weakref
from collections.abc import Callable, Iterable, KeysView, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from .atomic_files import fsync_dir
from .jsonable import to_jsonable

try:  # POSIX only; without it JsonlLog simply does not lock.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)


def _scan_jsonl(f: BinaryIO, name: str, visit: Callable[[int, dict], None]) -> tuple[int, int | None]:
    """Read JSONL from ``f``, calling ``visit(lineno, record)`` for each committed record.

    A record is committed when its line is a JSON object ending in a newline. The last
    non-blank line may be torn (crash mid-write); any earlier bad line is corruption and
    raises ValueError naming the file and line. Returns ``(end, torn_lineno)``: the byte
    offset just past the last committed line, and the torn line's number (or None).
    """
    end = offset = 0
    bad: tuple[int, str] | None = None  # (lineno, why) of a bad line that must be the last
    for lineno, raw in enumerate(f, start=1):
        offset += len(raw)
        if not raw.strip():
            continue
        if bad is not None:
            raise ValueError(f"{name}: line {bad[0]} is corrupt ({bad[1]}) and is not the last line")
        if not raw.endswith(b"\n"):
            bad = (lineno, "no trailing newline")
            continue
        try:
            rec = json.loads(raw)
        except ValueError as e:
            bad = (lineno, f"invalid JSON: {e}")
            continue
        if not isinstance(rec, dict):
            bad = (lineno, "not a JSON object")
            continue
        visit(lineno, rec)
        end = offset
    return end, (bad[0] if bad else None)


def read_jsonl(path: str | Path) -> list[dict]:
    """All committed records of a JSONL log, read-only (a torn last line is ignored).

    The file is read in one pass to its end first: another process may be appending to it (a
    dataset construction worker reads every worker's log), and iterating lines of the live file
    would go on past the end it first met, taking a line being written for a corrupt one."""
    out: list[dict] = []
    with open(path, "rb") as f:
        snapshot = io.BytesIO(f.read())  # a prefix of an append-only file: only its last line can be torn
    _scan_jsonl(snapshot, str(path), lambda _, rec: out.append(rec))
    return out


def _key_func(key: str | Callable[[dict], Any]) -> Callable[[dict], Any]:
    if callable(key):
        return key
    field = key

    def get(rec: dict) -> Any:
        try:
            return rec[field]
        except KeyError:
            raise KeyError(f"record has no key field {field!r}: {sorted(rec)}") from None

    return get


class JsonlLog:
    """Append-only JSONL record log, keyed, that resumes after a crash.

    Opening reads the existing records (keeping only their keys in memory) and truncates a
    torn last line. ``append`` writes one line then flushes and fsyncs, so every record that
    ``append`` returned for is durable; callers skip keys already ``in`` the log. Keys are
    computed on the record as it reads back from JSON, so they are the same after a reopen.

    One writer per file: the file is ``flock``-ed while open, and a second ``JsonlLog`` on
    the same file in another process raises RuntimeError. Opening it again in the same
    process closes the earlier object (handy when re-running a notebook cell).
    """

    _open: weakref.WeakValueDictionary[str, JsonlLog] = weakref.WeakValueDictionary()

    def __init__(self, path: str | Path, key: str | Callable[[dict], Any]) -> None:
        self.path = Path(path)
        self._key = _key_func(key)
        self._keys: dict[Any, None] = {}
        self._f: BinaryIO | None = None
        real = os.path.realpath(self.path)
        if (prev := JsonlLog._open.get(real)) is not None:
            prev.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._f = open(self.path, "a+b")  # writes always go to the end
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise RuntimeError(f"{self.path} is open for writing by another process") from None
            if created:
                fsync_dir(self.path.parent)
            self._f.seek(0)
            end, torn = _scan_jsonl(self._f, str(self.path), self._add_existing)
            if torn is not None:
                log.warning("%s: dropping torn line %d left by a crash", self.path, torn)
            if self._f.tell() != end:  # torn line and/or trailing blank lines
                self._f.truncate(end)
                self._f.flush()
                os.fsync(self._f.fileno())
        except BaseException:
            self.close()
            raise
        JsonlLog._open[real] = self

    def _add_existing(self, lineno: int, rec: dict) -> None:
        k = self._key(rec)
        if k in self._keys:
            raise ValueError(f"{self.path}: line {lineno} repeats key {k!r}")
        self._keys[k] = None

    def __repr__(self) -> str:
        return f"JsonlLog({str(self.path)!r}, {len(self)} records)"

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def keys(self) -> KeysView[Any]:
        """Keys of the committed records, in file order (a live view; supports set operations)."""
        return self._keys.keys()

    def records(self) -> list[dict]:
        """All records, in file order (read from disk)."""
        return read_jsonl(self.path)

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record durably; ValueError if its key is already present."""
        self.extend([record])

    def extend(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append records durably (one fsync); nothing is written if any key is a duplicate."""
        if self._f is None:
            raise ValueError(f"{self.path}: log is closed")
        lines: list[str] = []
        new: dict[Any, None] = {}
        for rec in records:
            line = json.dumps(to_jsonable(rec), ensure_ascii=False, separators=(",", ":"))
            parsed = json.loads(line)
            if not isinstance(parsed, dict):
                raise TypeError(f"a record must be a mapping, got {type(rec).__name__}")
            k = self._key(parsed)
            if k in self._keys or k in new:
                raise ValueError(f"{self.path}: duplicate key {k!r}")
            new[k] = None
            lines.append(line + "\n")
        if not lines:
            return
        self._f.write("".join(lines).encode("utf-8"))
        self._f.flush()
        os.fsync(self._f.fileno())
        self._keys.update(new)

    def close(self) -> None:
        """Close the file (and release its lock). Idempotent."""
        if self._f is not None:
            self._f.close()  # closing the descriptor releases the flock
            self._f = None

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
