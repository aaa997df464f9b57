"""JSON read back from the store, made safe for any response.

The HTTP API refuses what a response cannot carry (NaN, Infinity, documents nested more
than 100 levels; see treadle.server.limits), but a row written before those checks, or
by another program, may still hold it. Reading such a row must not fail every search
that meets it: non-finite numbers read as null, and containers nested deeper than
``MAX_READ_DEPTH`` read as null.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_READ_DEPTH", "cap_depth", "loads"]

# Above the HTTP API's write limit, below the depth encoders (pydantic, orjson) give up at.
MAX_READ_DEPTH = 200


def loads(text: str) -> Any:
    """``json.loads`` that never returns what no response can carry."""
    try:
        value = json.loads(text, parse_constant=_null)
    except RecursionError:
        return None
    if text.count("{") + text.count("[") > MAX_READ_DEPTH:  # cheap: deep needs many
        value = cap_depth(value)
    return value


def cap_depth(value: Any, max_depth: int = MAX_READ_DEPTH) -> Any:
    """``value`` with every container deeper than ``max_depth`` replaced by None."""
    if isinstance(value, dict):
        if max_depth <= 0:
            return None
        return {k: cap_depth(v, max_depth - 1) for k, v in value.items()}
    if isinstance(value, list):
        if max_depth <= 0:
            return None
        return [cap_depth(v, max_depth - 1) for v in value]
    return value


def _null(_name: str) -> None:
    return None
