"""Plain-JSON form of configs and results (and of a table's rows for a metrics file), and the
content hash that names a result by its config.

Only the standard library and numpy are imported here.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

HASH_LEN = 12


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
        return sorted((to_jsonable(v) for v in obj), key=canonical_json)
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON-able: {obj!r}")


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, floats by repr (json's default)."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_hash(config: Any) -> str:
    """Short stable hash (12 hex chars of sha256) of the canonical JSON of ``config``."""
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()[:HASH_LEN]


def table_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of a table as plain dicts for a metrics file, NaN (not measurable here, e.g. a
    seed std of one seed) as None."""
    out = []
    for row in table.to_dict("records"):
        out.append({key: (None if isinstance(value, float) and not np.isfinite(value) else
                          value.item() if isinstance(value, np.generic) else value) for key, value in row.items()})
    return out
