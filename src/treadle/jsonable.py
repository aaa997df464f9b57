"""LangGraph values as JSON: what the HTTP API returns for state, streams and results.

Messages and other pydantic models become their ``model_dump()``; dataclasses their
fields; LangGraph's ``Interrupt`` / ``Send`` / ``Command`` the dicts LangGraph
Platform sends; anything else unknown its ``str``. Never raises.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["dumps", "iso", "to_json"]


def _default(obj: Any) -> Any:
    from langgraph.types import Command, Interrupt, Send

    if isinstance(obj, Interrupt):
        return {"value": obj.value, "id": obj.id}
    if isinstance(obj, Send):
        return {"node": obj.node, "arg": obj.arg}
    if isinstance(obj, Command):
        return {k: v for k, v in (("update", obj.update), ("resume", obj.resume),
                                  ("goto", obj.goto), ("graph", obj.graph)) if v not in (None, ())}
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # noqa: BLE001 - e.g. a model holding a non-JSON field
            return dump()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, tuple):
        return list(obj)
    if isinstance(obj, (bytes, bytearray)):
        return base64.b64encode(bytes(obj)).decode()
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (uuid.UUID, dt.date, dt.time)):
        return str(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if hasattr(obj, "to_json"):  # LangChain Serializable (old style)
        try:
            return obj.to_json()
        except Exception:  # noqa: BLE001
            pass
    return str(obj)


_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(obj: Any) -> bytes:
    """JSON bytes of ``obj`` (LangGraph values included)."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTS)
    except TypeError:  # recursion through default hit an unsupported type
        return orjson.dumps(_plain(obj), option=orjson.OPT_NON_STR_KEYS)


def to_json(obj: Any) -> Any:
    """``obj`` as plain JSON types (dict, list, str, int, float, bool, None)."""
    return orjson.loads(dumps(obj))


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return _plain(_default(obj))


def iso(ts: float | None) -> str | None:
    """Unix seconds -> ISO 8601 with UTC offset, as LangGraph Platform sends times."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()
