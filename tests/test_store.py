"""Tests for stoplib.store, on real files in tmp_path."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from stoplib.store import (
    JsonlLog,
    Store,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    config_hash,
    load_metrics,
    provenance,
    read_json,
    read_jsonl,
    record_metrics,
    write_provenance,
)

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class Inner:
    path: Path = Path("data/x.jsonl")
    temps: tuple[float, ...] = (0.6, 1.0)


@dataclasses.dataclass(frozen=True)
class Cfg:
    model: str = "tiny"
    n: int = 8
    lr: float = 1e-4
    seed: int | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)
    tags: frozenset[str] = frozenset({"b", "a", "c"})


def _subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


# --------------------------------------------------------------------------- hashing


def test_config_hash_stable_and_sensitive():
    h = config_hash(Cfg())
    assert len(h) == 12 and int(h, 16) >= 0
    assert config_hash(Cfg()) == h
    # the same content as a plain dict (any key order; a set is a sorted list) hashes the same
    as_dict = {"tags": ["a", "b", "c"], "seed": None, "n": 8, "model": "tiny", "lr": 1e-4,
               "inner": {"temps": [0.6, 1.0], "path": "data/x.jsonl"}}
    assert config_hash(as_dict) == h
    variants = [
        Cfg(model="tiny2"), Cfg(n=9), Cfg(lr=1.0001e-4), Cfg(seed=0),
        Cfg(inner=Inner(path=Path("data/y.jsonl"))), Cfg(inner=Inner(temps=(0.6,))),
        Cfg(inner=Inner(temps=(1.0, 0.6))), Cfg(tags=frozenset({"a"})),
    ]
    hashes = {config_hash(v) for v in variants}
    assert h not in hashes and len(hashes) == len(variants)
    assert config_hash({"a": np.int64(3), "b": np.float32(0.5)}) == config_hash({"a": 3, "b": 0.5})
    with pytest.raises(TypeError):
        config_hash({"a": object()})


def test_config_hash_same_in_fresh_process():
    code = textwrap.dedent(
        """
        import dataclasses
        from pathlib import Path
        from stoplib.store import config_hash

        @dataclasses.dataclass(frozen=True)
        class Inner:
            path: Path = Path("data/x.jsonl")
            temps: tuple = (0.6, 1.0)

        @dataclasses.dataclass(frozen=True)
        class Cfg:
            model: str = "tiny"
            n: int = 8
            lr: float = 1e-4
            seed: object = None
            inner: Inner = dataclasses.field(default_factory=Inner)
            tags: frozenset = frozenset({"b", "a", "c"})

        print(config_hash(Cfg()))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
        env=_subprocess_env(PYTHONHASHSEED="12345"),  # set order must not matter
    )
    assert out.stdout.strip() == config_hash(Cfg())


# --------------------------------------------------------------------------- atomic writes + Store


def test_atomic_writes_leave_no_temp_files(tmp_path):
    p = tmp_path / "sub" / "a.json"
    atomic_write_json(p, {"x": np.arange(3), "y": np.float64(0.25), "p": Path("a/b"), "c": Cfg(), "n": np.bool_(True)})
    got = read_json(p)
    assert got["x"] == [0, 1, 2] and got["y"] == 0.25 and got["p"] == "a/b" and got["n"] is True
    assert got["c"]["inner"]["temps"] == [0.6, 1.0]
    assert p.read_text().startswith("{\n  \"c\"")  # indent 2, sorted keys
    atomic_write_json(p, {"x": 1})  # overwrite
    assert read_json(p) == {"x": 1}
    t = atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert t.read_text(encoding="utf-8") == "héllo\n"
    atomic_write_bytes(t, b"\x00\x01")
    assert t.read_bytes() == b"\x00\x01"
    names = sorted(f.name for f in tmp_path.rglob("*"))
    assert names == ["a.json", "sub", "t.txt"], names


def test_atomic_write_failure_keeps_old_file(tmp_path):
    p = tmp_path / "a.json"
    atomic_write_json(p, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"v": object()})
    assert read_json(p) == {"v": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["a.json"]


def test_store_run_dir(tmp_path):
    store = Store(tmp_path / "results")
    cfg = Cfg()
    assert not store.exists("generate", cfg, "out.jsonl")
    assert not (tmp_path / "results").exists()  # exists() creates nothing
    d = store.run_dir("generate", cfg)
    assert d == tmp_path / "results" / "generate" / config_hash(cfg) and d.is_dir()
    assert read_json(d / "config.json")["inner"]["path"] == "data/x.jsonl"
    (d / "out.jsonl").write_text("")
    assert store.exists("generate", cfg, "out.jsonl")
    assert not store.exists("generate", Cfg(n=1), "out.jsonl")
    assert store.run_dir("generate", cfg) == d  # idempotent
    atomic_write_json(d / "config.json", {"tampered": True})
    with pytest.raises(ValueError, match="different config"):
        store.run_dir("generate", cfg)
    with pytest.raises(ValueError):
        store.run_dir("../evil", cfg)


# --------------------------------------------------------------------------- JsonlLog


def test_jsonl_log_basic_and_duplicates(tmp_path):
    p = tmp_path / "log.jsonl"
    with JsonlLog(p, key="id") as log:
        log.append({"id": "a", "v": np.float32(0.5), "toks": np.arange(2)})
        log.extend([{"id": "b", "v": 2}, {"id": "c", "v": 3}])
        assert len(log) == 3 and "b" in log and "z" not in log
        assert list(log.keys()) == ["a", "b", "c"]
        with pytest.raises(ValueError, match="duplicate"):
            log.append({"id": "a", "v": 9})
        with pytest.raises(ValueError, match="duplicate"):  # duplicate inside one batch: nothing written
            log.extend([{"id": "d"}, {"id": "d"}])
        with pytest.raises(KeyError):
            log.append({"v": 1})
        assert log.records() == [{"id": "a", "v": 0.5, "toks": [0, 1]}, {"id": "b", "v": 2}, {"id": "c", "v": 3}]
    with pytest.raises(ValueError, match="closed"):
        log.append({"id": "e"})
    assert p.read_text().count("\n") == 3


def test_jsonl_log_resume_after_partial_line(tmp_path):
    p = tmp_path / "log.jsonl"
    key = lambda r: f"{r['problem']}/{r['path']}"  # noqa: E731
    with JsonlLog(p, key=key) as log:
        log.extend({"problem": i, "path": 0, "text": f"line\n{i}"} for i in range(5))
    with open(p, "ab") as f:  # a crash mid-write leaves a torn line
        f.write(b'{"problem": 5, "path": 0, "te')
    assert len(read_jsonl(p)) == 5  # read-only readers ignore the torn tail ...
    assert p.read_bytes().endswith(b'"te')  # ... without touching the file
    with JsonlLog(p, key=key) as log:
        assert len(log) == 5 and "4/0" in log and "5/0" not in log
        assert p.read_bytes().endswith(b"}\n")  # torn line truncated away
        for i in range(8):
            if key({"problem": i, "path": 0}) not in log:
                log.append({"problem": i, "path": 0, "text": f"line\n{i}"})
        recs = log.records()
    assert [r["problem"] for r in recs] == list(range(8))
    assert recs[3]["text"] == "line\n3"
    # complete JSON but no newline is not committed either; invalid JSON as last line too
    for tail in (b'{"problem": 99, "path": 0}', b'{"problem": 99, "path": 0, "x": }\n'):
        with open(p, "ab") as f:
            f.write(tail)
        with JsonlLog(p, key=key) as log:
            assert len(log) == 8 and "99/0" not in log
    assert len(p.read_text().splitlines()) == 8


def test_jsonl_log_corruption_in_middle_raises(tmp_path):
    p = tmp_path / "log.jsonl"
    lines = [json.dumps({"id": i}) for i in range(4)]
    lines[1] = '{"id": 1, "oops'
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"log\.jsonl: line 2 is corrupt"):
        JsonlLog(p, key="id")
    p.write_text('{"id": 0}\n{"id": 0}\n')
    with pytest.raises(ValueError, match=r"line 2 repeats key 0"):
        JsonlLog(p, key="id")
    assert p.read_text() == '{"id": 0}\n{"id": 0}\n'  # a failed open modifies nothing


def test_reading_a_log_another_process_is_appending_to(tmp_path, monkeypatch):
    """A reader that meets the end of the file inside a line being written reads the records
    before it; it does not go on to the rest of that line and call the log corrupt."""
    import io

    from stoplib import jsonl_log

    p = tmp_path / "log.jsonl"
    whole = "".join(json.dumps({"id": i, "pad": "x" * 50}) + "\n" for i in range(6)).encode()
    p.write_bytes(whole)
    cut = whole.index(b"\n", len(whole) // 2) + 20  # the end as first met: inside the 5th line

    class Growing(io.RawIOBase):  # the file as a concurrent reader sees it: EOF at `cut`, then the rest
        def __init__(self):
            self.parts, self.pos = [whole[:cut], b"", whole[cut:], b""], 0

        def readable(self):
            return True

        def readinto(self, buffer):
            if not self.parts:
                return 0
            part = self.parts[0]
            n = min(len(buffer), len(part) - self.pos)
            buffer[:n] = part[self.pos:self.pos + n]
            self.pos += n
            if self.pos == len(part):
                self.parts.pop(0)
                self.pos = 0
            return n

    monkeypatch.setattr(jsonl_log, "open", lambda *args, **kwargs: io.BufferedReader(Growing(), 16), raising=False)
    assert [r["id"] for r in read_jsonl(p)] == [0, 1, 2, 3]


def test_jsonl_log_single_writer(tmp_path):
    p = tmp_path / "log.jsonl"
    first = JsonlLog(p, key="id")
    first.append({"id": 1})
    code = f"from stoplib.store import JsonlLog; JsonlLog({str(p)!r}, key='id')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=_subprocess_env())
    assert out.returncode != 0 and "open for writing by another process" in out.stderr
    second = JsonlLog(p, key="id")  # same process: takes over (e.g. a re-run notebook cell)
    with pytest.raises(ValueError, match="closed"):
        first.append({"id": 2})
    second.append({"id": 2})
    second.close()
    assert [r["id"] for r in read_jsonl(p)] == [1, 2]


CRASH_JOB = textwrap.dedent(
    """
    import sys, time
    from stoplib.store import JsonlLog
    path, n, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    log = JsonlLog(path, key="id")
    for i in range(n):
        k = f"k{i:04d}"
        if k in log:
            continue
        log.append({"id": k, "i": i, "payload": "x" * (i % 7) * 1000})
        print(k, flush=True)
        time.sleep(delay)
    """
)


def test_jsonl_log_survives_sigkill(tmp_path):
    p = tmp_path / "job.jsonl"
    n = 60
    proc = subprocess.Popen([sys.executable, "-c", CRASH_JOB, str(p), str(n), "0.005"],
                            stdout=subprocess.PIPE, text=True, env=_subprocess_env())
    acked = []
    try:
        while len(acked) < 15:
            line = proc.stdout.readline()
            assert line, "job exited before it could be killed"
            acked.append(line.strip())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with JsonlLog(p, key="id") as log:
        done = list(log.keys())
    assert len(done) < n, "job finished before the kill; the test proves nothing"
    assert done[: len(acked)] == acked  # every acknowledged record survived
    # resume: run the same job to completion; it skips keys already present
    subprocess.run([sys.executable, "-c", CRASH_JOB, str(p), str(n), "0"], check=True,
                   timeout=60, capture_output=True, env=_subprocess_env())
    recs = read_jsonl(p)
    assert [r["id"] for r in recs] == [f"k{i:04d}" for i in range(n)]
    assert [r["i"] for r in recs] == list(range(n))


# --------------------------------------------------------------------------- provenance + metrics


def test_provenance_keys(tmp_path):
    prov = provenance()
    assert set(prov) == {"git", "python", "platform", "packages", "device", "timestamp_utc"}
    assert set(prov["git"]) == {"commit", "dirty"}
    assert prov["git"]["commit"] is None or len(prov["git"]["commit"]) == 40
    assert prov["python"] == ".".join(map(str, sys.version_info[:3]))
    assert prov["packages"]["numpy"] == np.__version__
    assert prov["packages"]["stoplib"] is not None
    assert "vllm" in prov["packages"] and "torch" in prov["packages"]
    assert prov["device"]["cpu_count"] == os.cpu_count()
    assert prov["timestamp_utc"].endswith("+00:00")
    path = write_provenance(tmp_path)
    assert path == tmp_path / "provenance.json" and read_json(path)["python"] == prov["python"]


def test_record_and_load_metrics(tmp_path):
    metrics = {"accuracy": np.float64(0.75), "counts": np.array([1, 2]), "by_type": {"I": 0.1}}
    path = record_metrics("04_stop_vs_baselines", metrics, results_root=tmp_path)
    assert path == tmp_path / "latest" / "04_stop_vs_baselines.json"
    doc = read_json(path)
    assert doc["notebook"] == "04_stop_vs_baselines" and "git" in doc["provenance"]
    assert load_metrics("04_stop_vs_baselines", results_root=tmp_path) == {
        "accuracy": 0.75, "counts": [1, 2], "by_type": {"I": 0.1}}
    with pytest.raises(FileNotFoundError, match="run the '99_missing' notebook"):
        load_metrics("99_missing", results_root=tmp_path)
    with pytest.raises(ValueError):
        record_metrics("../x", {}, results_root=tmp_path)
