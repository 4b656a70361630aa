"""Parameters of notebooks, the CLI and :func:`stoplib.config.resolve`: parsed and validated here,
so that a bad value stops the run with an error naming the parameter, the value and what is
allowed, before any work is done. ``resolve()`` checks the run's config with these functions;
notebooks check their own further parameters (variants, n_boot, layers, ...) with them."""

from __future__ import annotations

import math
import os
from typing import Any, Sequence


def _bad(name: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"parameter {name}={value!r}: {allowed}")


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """An integer of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(name, value, f"expected an integer >= {minimum}")
    return value


def optional_int(name: str, value: Any, minimum: int = 1) -> int | None:
    """None, or an integer of at least ``minimum``."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise _bad(name, value, f"expected None or an integer >= {minimum}")
    return value


def number(name: str, value: Any, low: float, high: float) -> float:
    """A finite number strictly between ``low`` and ``high``."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not low < value < high):
        allowed = f"> {low}" if math.isinf(high) else f"strictly between {low} and {high}"
        raise _bad(name, value, f"expected a number {allowed}")
    return float(value)


def text(name: str, value: Any, *, optional: bool = False) -> str | None:
    """A non-empty string (or None when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, value, "expected a non-empty string" + (" or None" if optional else ""))
    return value


def path_text(name: str, value: Any) -> str:
    """A non-empty file-system path (str or os.PathLike)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise _bad(name, value, "expected a non-empty path")
    return value


def instance(name: str, value: Any, kind: type) -> Any:
    """An instance of ``kind``."""
    if not isinstance(value, kind):
        raise _bad(name, value, f"expected a {kind.__name__}, got {type(value).__name__}")
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices``."""
    if value not in choices:
        raise _bad(name, value, f"expected one of {', '.join(choices)}")
    return value


def choice_list(name: str, text: Any, choices: Sequence[str]) -> list[str]:
    """A comma-separated, non-empty list of ``choices`` (duplicates dropped, order kept)."""
    if not isinstance(text, str):
        raise _bad(name, text, f"expected a comma-separated list of {', '.join(choices)}")
    items = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [v for v in items if v not in choices]
    if not items or unknown:
        raise _bad(name, text, f"expected a comma-separated list of {', '.join(choices)}"
                   + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    return items


def fractions(name: str, text: Any) -> list[float]:
    """A comma-separated, non-empty list of numbers strictly between 0 and 1, sorted."""
    allowed = "expected comma-separated fractions strictly between 0 and 1, e.g. '0.2,0.3'"
    if not isinstance(text, str):
        raise _bad(name, text, allowed)
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise _bad(name, text, allowed) from None
    if not values or any(not 0 < v < 1 for v in values):
        raise _bad(name, text, allowed)
    return sorted(set(values))


def layers(name: str, text: Any) -> str | int:
    """"all", or a number of top layers (>= 1)."""
    if text == "all":
        return "all"
    try:
        count = int(str(text))
    except ValueError:
        raise _bad(name, text, 'expected "all" or a number of top layers >= 1') from None
    if count < 1:
        raise _bad(name, text, 'expected "all" or a number of top layers >= 1')
    return count
