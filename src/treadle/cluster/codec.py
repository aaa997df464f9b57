"""How run payloads, task payloads and results travel through the store.

Values use LangGraph's own serializer (msgpack with LangChain/pydantic/dataclass
support, the same one checkpoints use, with the same allow-lists:
``treadle.store.serde_policy``): ``Command``, ``Send``, messages and ``Interrupt``
round-trip. Nothing read from a run or task record is unpickled (unless langgraph.json
turns ``checkpointer.serde.pickle_fallback`` on), so
a queued run can carry data, never code; code travels only as a graph shipped by
value, which workers load only when told to trust the store (see ``treadle.graphs.by_value``).
"""

from __future__ import annotations

from typing import Any

from treadle.errors import InputError
from treadle.store.serde_policy import serializer

__all__ = ["decode", "encode"]

def encode(value: Any) -> bytes:
    """``value`` as bytes: ``<type>\\n<data>``."""
    try:
        kind, data = serializer().dumps_typed(value)
    except Exception as exc:
        raise InputError(
            f"cannot send {type(value).__name__} through the store ({exc}); "
            "use JSON-like data, pydantic models, dataclasses or LangChain messages"
        ) from exc
    return kind.encode() + b"\n" + data


def decode(blob: bytes) -> Any:
    kind, _, data = bytes(blob).partition(b"\n")
    return serializer().loads_typed((kind.decode(), data))
