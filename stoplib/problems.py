"""Problem records and loaders: the paper's benchmark files, generic JSON/JSONL, HF datasets.

Every loader returns a list of :class:`Problem`. Bad input raises :class:`ProblemFormatError`
naming the file, the row (and line, for JSONL) and the field; no row is ever dropped silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .store import atomic_write_text, read_text

KINDS = ("math", "multiple_choice", "integer", "toy")

#: Benchmark names accepted by :func:`load_problems`, and their file in the benchmarks directory.
BENCHMARKS: dict[str, str] = {
    "aime_2024": "aime_2024.json",
    "aime_2025": "aime_2025.json",
    "brumo_2025": "brumo_2025.json",
    "hmmt_2025": "hmmt_25.json",
    "zebralogic": "zebralogic_hard.json",
}

_QUESTION_KEYS = ("problem", "question", "prompt")
_ROMAN = {1: "I", 2: "II"}


class ProblemFormatError(ValueError):
    """A problem file or record is malformed; the message names file, row/line and field."""


@dataclass(frozen=True)
class Problem:
    """One benchmark question.

    ``prompt`` is the bare question (no instruction, no chat template); ``answer`` is the reference
    answer as a string; ``options`` holds ``(letter, text)`` pairs for multiple choice.
    """

    id: str
    prompt: str
    answer: str
    kind: str
    source: str
    options: tuple[tuple[str, str], ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        for name in ("id", "prompt", "answer", "kind", "source"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ValueError(f"field '{name}': expected a string, got {type(value).__name__}")
        if self.kind not in KINDS:
            raise ValueError(f"field 'kind': {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.options is not None:
            object.__setattr__(self, "options", _options_tuple(self.options))
        if self.kind == "multiple_choice":
            if not self.options:
                raise ValueError("field 'options': a multiple_choice problem needs options")
            letters = [letter for letter, _ in self.options]
            if self.answer not in letters:
                raise ValueError(
                    f"field 'answer': {self.answer!r} is not one of the option letters {letters}"
                )

    @property
    def letters(self) -> tuple[str, ...]:
        """The option letters, in order (empty if there are no options)."""
        return tuple(letter for letter, _ in self.options or ())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict; :meth:`from_dict` and the generic loader read it back."""
        out: dict[str, Any] = {
            "id": self.id,
            "prompt": self.prompt,
            "answer": self.answer,
            "kind": self.kind,
            "source": self.source,
        }
        if self.options is not None:
            out["options"] = dict(self.options)
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Problem:
        """Inverse of :meth:`to_dict` (raises ValueError/KeyError on a malformed dict)."""
        options = data.get("options")
        return cls(
            id=data["id"],
            prompt=data["prompt"],
            answer=data["answer"],
            kind=data["kind"],
            source=data["source"],
            options=None if options is None else _options_from_json(options),
            meta=dict(data.get("meta") or {}),
        )


def _options_tuple(options: Any) -> tuple[tuple[str, str], ...]:
    """Validate ``(letter, text)`` pairs and return them as a tuple of tuples."""
    pairs = []
    for pair in options:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"field 'options': expected (letter, text) pairs, got {pair!r}")
        letter, text = pair
        if not isinstance(letter, str) or not letter.strip():
            raise ValueError(f"field 'options': bad option letter {letter!r}")
        if not isinstance(text, str):
            raise ValueError(f"field 'options': option {letter} text must be a string")
        pairs.append((letter, text))
    letters = [letter for letter, _ in pairs]
    if len(set(letters)) != len(letters):
        raise ValueError(f"field 'options': duplicate option letters {letters}")
    return tuple(pairs)


def _options_from_json(options: Any) -> tuple[tuple[str, str], ...]:
    """Options as a dict ``{letter: text}``, a list of texts (letters A, B, ...) or of pairs."""
    if isinstance(options, Mapping):
        return _options_tuple(options.items())
    if isinstance(options, list):
        if all(isinstance(o, str) for o in options):
            if len(options) > 26:
                raise ValueError("field 'options': more than 26 options")
            return _options_tuple((chr(ord("A") + i), text) for i, text in enumerate(options))
        return _options_tuple(options)
    raise ValueError(f"field 'options': expected a dict or a list, got {type(options).__name__}")


# ---------------------------------------------------------------------------------------------
# Row parsers. Each takes one JSON object and returns a Problem or raises ValueError whose
# message starts with "field '...'"; the caller adds the file and row to the message.


def _require(row: Mapping[str, Any], key: str, types: type | tuple[type, ...] = str) -> Any:
    if key not in row:
        raise ValueError(f"field '{key}' is missing")
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, types):
        allowed = (types,) if isinstance(types, type) else types
        names = " or ".join(t.__name__ for t in allowed)
        raise ValueError(f"field '{key}': expected {names}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"field '{key}' is empty")
    return value


def _text(row: Mapping[str, Any], key: str) -> str:
    """A string field; ints (e.g. AIME answers stored as numbers) are converted to str."""
    return str(_require(row, key, (str, int)))


def _extras(row: Mapping[str, Any], used: Iterable[str]) -> dict[str, Any]:
    """Every field a parser did not consume, kept as metadata."""
    used = set(used)
    meta = {k: v for k, v in row.items() if k not in used and k != "meta"}
    if "meta" in row:
        if not isinstance(row["meta"], Mapping):
            raise ValueError(f"field 'meta': expected an object, got {type(row['meta']).__name__}")
        meta.update(row["meta"])
    return meta


def _parse_aime_2024(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """aime_2024.json: ids like "2024-I-1" from year / aime_number / problem_number."""
    year = _require(row, "year", int)
    aime_number = _require(row, "aime_number", int)
    number = _require(row, "problem_number", int)
    if aime_number not in _ROMAN:
        raise ValueError(f"field 'aime_number': expected 1 or 2, got {aime_number}")
    # The file stores problem 15 as problem_number 0 (checked: answers 721 and 315 are I-15, II-15).
    if number == 0:
        number = 15
    return Problem(
        id=f"{year}-{_ROMAN[aime_number]}-{number}",
        prompt=_require(row, "problem"),
        answer=_text(row, "answer"),
        kind="math",
        source=source,
        meta=_extras(row, ("problem", "answer")),
    )


def _parse_brumo(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """brumo_2025.json: id from problem_idx."""
    return Problem(
        id=str(_require(row, "problem_idx", (int, str))),
        prompt=_require(row, "problem"),
        answer=_text(row, "answer"),
        kind="math",
        source=source,
        meta=_extras(row, ("problem_idx", "problem", "answer")),
    )


def _parse_generic(row: Mapping[str, Any], index: int, source: str) -> Problem:
    """Generic rows: id (default: row index), problem|question|prompt, answer, options, kind."""
    question_key = next((k for k in _QUESTION_KEYS if k in row), None)
    if question_key is None:
        raise ValueError("field 'problem' is missing (also looked for 'question' and 'prompt')")
    options = None
    if row.get("options") is not None:
        options = _options_from_json(row["options"])
    kind = row.get("kind", "multiple_choice" if options else "math")
    if not isinstance(kind, str):
        raise ValueError(f"field 'kind': expected str, got {type(kind).__name__}")
    row_source = row.get("source", source)
    if not isinstance(row_source, str):
        raise ValueError(f"field 'source': expected str, got {type(row_source).__name__}")
    return Problem(
        id=_text(row, "id") if "id" in row else str(index),  # an empty id is an error (_require)
        prompt=_require(row, question_key),
        answer=_text(row, "answer"),
        kind=kind,
        source=row_source,
        options=options,
        meta=_extras(row, ("id", question_key, "answer", "options", "kind", "source")),
    )


_PARSERS = {"aime_2024": _parse_aime_2024, "brumo": _parse_brumo, "generic": _parse_generic}


def detect_format(rows: Sequence[Mapping[str, Any]]) -> str:
    """Name of the row format ("aime_2024", "brumo" or "generic"), from the first row's keys.

    aime_2025.json, hmmt_25.json and zebralogic_hard.json are read by the generic format.
    """
    if not rows or not isinstance(rows[0], Mapping):
        return "generic"
    keys = set(rows[0])
    if {"year", "aime_number", "problem_number"} <= keys:
        return "aime_2024"
    if "problem_idx" in keys:
        return "brumo"
    return "generic"


# ---------------------------------------------------------------------------------------------
# Files.


def _read_rows(path: Path) -> list[tuple[str, Any]]:
    """``(location, row)`` pairs of a .json (a list of objects) or .jsonl file."""
    suffix = path.suffix.lower()
    text = read_text(path, "problems file")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ProblemFormatError(f"{path} line {e.lineno}: invalid JSON ({e.msg})") from e
        if not isinstance(data, list):
            raise ProblemFormatError(
                f"{path}: expected a JSON list of objects at top level, got {type(data).__name__}"
            )
        return [(f"{path} row {i}", row) for i, row in enumerate(data)]
    if suffix == ".jsonl":
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path} row {len(rows)} (line {lineno})"
            try:
                rows.append((where, json.loads(line)))
            except json.JSONDecodeError as e:
                raise ProblemFormatError(f"{path} line {lineno}: invalid JSON ({e.msg})") from e
        return rows
    raise ProblemFormatError(f"{path}: unsupported file type {suffix!r} (expected .json or .jsonl)")


def _parse_rows(located_rows: list[tuple[str, Any]], source: str) -> list[Problem]:
    """Parse rows in the detected format; errors get their location; duplicate ids are errors."""
    parser = _PARSERS[detect_format([row for _, row in located_rows])]
    problems: list[Problem] = []
    first_seen: dict[str, str] = {}
    for index, (where, row) in enumerate(located_rows):
        if not isinstance(row, Mapping):
            raise ProblemFormatError(f"{where}: expected a JSON object, got {type(row).__name__}")
        try:
            problem = parser(row, index, source)
        except ValueError as e:
            raise ProblemFormatError(f"{where}: {e}") from e
        if problem.id in first_seen:
            first = first_seen[problem.id]
            raise ProblemFormatError(
                f"{where}: field 'id': duplicate id {problem.id!r} (first at {first})"
            )
        first_seen[problem.id] = where
        problems.append(problem)
    return problems


BENCHMARKS_DIR = Path(__file__).resolve().parent / "data" / "benchmarks"


def benchmarks_dir() -> Path:
    """The directory of the benchmark files: $STOPLIB_BENCHMARKS if set, else the copies shipped
    with the package (``stoplib/data/benchmarks``, see its README for their source)."""
    env = os.environ.get("STOPLIB_BENCHMARKS")
    if env:
        if not Path(env).is_dir():
            raise FileNotFoundError(f"STOPLIB_BENCHMARKS={env!r} is not a directory")
        return Path(env)
    return BENCHMARKS_DIR


def _benchmark_path(name: str) -> Path:
    path = benchmarks_dir() / BENCHMARKS[name]
    if not path.is_file():
        raise FileNotFoundError(f"benchmark {name!r}: {path} not found (reinstall stoplib, or set STOPLIB_BENCHMARKS "
                                f"to a directory holding {BENCHMARKS[name]})")
    return path


def _load_hf(spec: str, limit: int | None) -> list[Problem]:
    """``hf:<dataset>[:split]`` through the optional ``datasets`` package (generic columns)."""
    name, _, split = spec[len("hf:"):].partition(":")
    try:
        import datasets
    except ImportError as e:
        raise ImportError(
            f"loading {spec!r} needs the 'datasets' package: pip install datasets"
        ) from e
    dataset = datasets.load_dataset(name, split=split or "train")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    rows = [(f"{spec} row {i}", dict(row)) for i, row in enumerate(dataset)]
    return _parse_rows(rows, source=name)


def load_problems(source: str | Path, *, limit: int | None = None) -> list[Problem]:
    """Load problems from a .json/.jsonl path, a name in BENCHMARKS, or "hf:<dataset>[:split]".

    ``limit`` keeps the first ``limit`` problems (the whole file is still validated).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"parameter limit={limit!r}: expected None or an integer >= 1")
    if not isinstance(source, (str, os.PathLike)) or not str(source).strip():
        raise ValueError(f"problems source {source!r}: expected a benchmark name, a .json/.jsonl path or 'hf:<dataset>'")
    if isinstance(source, str) and source.startswith("hf:"):
        return _load_hf(source, limit)
    if isinstance(source, str) and source in BENCHMARKS:
        path, name = _benchmark_path(source), source
    else:
        path = Path(source)
        if path.is_dir():
            raise IsADirectoryError(f"problems file {path} is a directory; give a .json or .jsonl file")
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such file (known benchmark names: {', '.join(BENCHMARKS)})"
            )
        by_file = {filename: n for n, filename in BENCHMARKS.items()}
        name = by_file.get(path.name, path.stem)
    problems = _parse_rows(_read_rows(path), source=name)
    if not problems:
        raise ProblemFormatError(f"{path}: the file holds no problems")
    return problems if limit is None else problems[:limit]


def save_problems(problems: Iterable[Problem], path: str | Path) -> Path:
    """Write problems as JSONL (one ``to_dict()`` per line); ``load_problems`` reads it back."""
    return atomic_write_text(path, "".join(json.dumps(p.to_dict(), ensure_ascii=False) + "\n" for p in problems))
