"""Label records: the labelled prefixes STOP and the text verifier train on, and their JSONL files.

A record holds ``prefix_token_ids`` (prompt + generated prefix) and a soft label under any of the
authors' field names (``Soft_label``, ``soft_label``, ``good_probability``, ``label_prob``,
``score``); optionally a hard label (``Hard_label``, ``hard_label``, ``label``, ``class_label``)
and our ``problem_id``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .store import read_text

SOFT_FIELDS = ("Soft_label", "soft_label", "good_probability", "label_prob", "score")
HARD_FIELDS = ("Hard_label", "hard_label", "label", "class_label")


@dataclass(frozen=True)
class LabelRecord:
    """One labelled prefix."""

    prefix_token_ids: tuple[int, ...]
    soft_label: float
    hard_label: int | None = None
    problem_id: str | None = None


def _first(row: dict, names: Sequence[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in row and row[name] is not None:
            return name, row[name]
    return None, None


def parse_label_record(row: dict, where: str) -> LabelRecord:
    """Validate one JSON row; errors name ``where`` (file and line) and the field."""
    ids = row.get("prefix_token_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                        for t in ids):
        raise ValueError(f"{where}: field 'prefix_token_ids' must be a non-empty list of token ids")
    name, soft = _first(row, SOFT_FIELDS)
    if name is None:
        raise ValueError(f"{where}: no soft label (looked for {', '.join(SOFT_FIELDS)})")
    if isinstance(soft, bool) or not isinstance(soft, (int, float)) or not 0.0 <= float(soft) <= 1.0:
        raise ValueError(f"{where}: field {name!r} must be a number in [0, 1], got {soft!r}")
    hname, hard = _first(row, HARD_FIELDS)
    if hname is not None:
        if hard not in (0, 1, True, False):
            raise ValueError(f"{where}: field {hname!r} must be 0 or 1, got {hard!r}")
        hard = int(hard)
    pid = row.get("problem_id")
    return LabelRecord(tuple(ids), float(soft), hard, None if pid is None else str(pid))


def load_label_records(path: str | Path) -> list[LabelRecord]:
    """Read a label JSONL file (ours or the authors' released schema)."""
    path = Path(path)
    records = []
    for line_no, line in enumerate(read_text(path, "label file").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {line_no}: invalid JSON ({err})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {line_no}: expected a JSON object")
        records.append(parse_label_record(row, f"{path} line {line_no}"))
    if not records:
        raise ValueError(f"{path}: no records")
    return records


def problem_share(problem_id: str) -> float:
    """A number in [0, 1) from a hash of the problem id: the same on every machine."""
    return int(hashlib.sha256(problem_id.encode()).hexdigest()[:12], 16) / 16**12


def label_subset(records: Sequence[LabelRecord], fraction: float) -> list[LabelRecord]:
    """The records of the problems whose :func:`problem_share` is below ``fraction`` (all at 1):
    a label-count ablation by problem, nested across fractions."""
    if fraction >= 1:
        return list(records)
    missing = sum(r.problem_id is None for r in records)
    if missing:
        raise ValueError(f"label_fraction={fraction} picks labels by problem, but {missing} records have no problem id")
    out = [r for r in records if problem_share(r.problem_id) < fraction]
    if not out:
        raise ValueError(f"label_fraction={fraction} keeps none of the {len({r.problem_id for r in records})} "
                         "training problems; raise it")
    return out
