"""What treadle's serializers may rebuild when they read: ``checkpointer.serde``.

Every value treadle writes to its store (checkpoints, task writes, run inputs and
results, task payloads, stream events) goes through LangGraph's ``JsonPlusSerializer``,
and every one of those serializers is built by :func:`serializer`. Reading a value back
may import and call a class named in the stored bytes, so what it may call is
allow-listed, as langgraph.json's ``"checkpointer": {"serde": {...}}`` says (the keys of
LangGraph Platform's ``SerdeConfig``):

* ``allowed_msgpack_modules``: ``[["module", "Class"], ...]``: types rebuilt from msgpack
  besides LangGraph's safe ones (datetimes, UUIDs, messages, ``Send``, ``Command``...) and
  the types the served graphs' schemas name (their state, input, output and context
  schemas, as ``LANGGRAPH_STRICT_MSGPACK=true`` collects them). Any other object is not
  constructed: it reads as its data (a dict of its fields), with one warning per type.
  ``true`` rebuilds any type (LangGraph's permissive default, with its warning). Absent or
  ``null``: treadle's default, the strict one.
* ``allowed_json_modules``: the same for the legacy ``json`` format (``true``: any).
* ``pickle_fallback``: write what msgpack cannot encode with pickle, and read pickled
  values. Off unless set to ``true`` (LangGraph Platform defaults it on): a pickled row
  is refused, never unpickled.

The policy is the process's (one langgraph.json per server or worker), so the
checkpointer and the run codec read the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from treadle.errors import ConfigError, StoreDataError

__all__ = ["SerdePolicy", "allow_types", "configure", "current", "parse", "serializer"]

Allowed = frozenset[tuple[str, ...]] | Literal[True]


@dataclass(frozen=True)
class SerdePolicy:
    """The allow-lists (``True``: anything) and whether pickle is a fallback."""

    allowed_msgpack_modules: Allowed = frozenset()
    allowed_json_modules: Allowed = frozenset()
    pickle_fallback: bool = False


class _Serializer(JsonPlusSerializer):
    """LangGraph's, with a refused pickled value said in treadle's words."""

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        if data[0] == "pickle" and not self.pickle_fallback:
            raise StoreDataError(
                "refusing to unpickle a stored value: unpickling runs code. If this database "
                "is as trusted as your code, set \"checkpointer\": {\"serde\": "
                "{\"pickle_fallback\": true}} in langgraph.json")
        return super().loads_typed(data)


_lock = threading.Lock()
_policy = SerdePolicy()
_graph_types: set[tuple[str, ...]] = set()
_built: JsonPlusSerializer | None = None


def parse(options: Mapping[str, Any] | None, source: str = "langgraph.json") -> SerdePolicy:
    """``checkpointer.serde`` as a policy; a malformed value is one ConfigError line."""
    options = options or {}
    fallback = options.get("pickle_fallback")
    if fallback is not None and not isinstance(fallback, bool):
        raise ConfigError(f'{source}: "checkpointer.serde.pickle_fallback" must be a boolean')
    return SerdePolicy(
        allowed_msgpack_modules=_allowed(options, "allowed_msgpack_modules", source),
        allowed_json_modules=_allowed(options, "allowed_json_modules", source),
        pickle_fallback=bool(fallback),
    )


def _allowed(options: Mapping[str, Any], name: str, source: str) -> Allowed:
    value = options.get(name)
    if value is None or value is False:
        return frozenset()
    if value is True:
        return True
    if isinstance(value, list) and all(
        isinstance(item, list) and len(item) >= 2 and all(isinstance(p, str) and p for p in item)
        for item in value
    ):
        return frozenset(tuple(item) for item in value)
    raise ConfigError(
        f'{source}: "checkpointer.serde.{name}" must be true, null or a list of '
        '["module", "Class"] pairs, e.g. [["my_agent.state", "Plan"]]'
    )


def configure(policy: SerdePolicy | Mapping[str, Any] | None) -> SerdePolicy:
    """Make ``policy`` (or langgraph.json's ``checkpointer.serde`` object; None: the
    default) the process's; serializers built from now on follow it."""
    global _policy, _built
    chosen = policy if isinstance(policy, SerdePolicy) else parse(policy)
    with _lock:
        _policy, _built = chosen, None
    return chosen


def current() -> SerdePolicy:
    return _policy


def allow_types(types: Iterable[tuple[str, ...]]) -> bool:
    """Also rebuild these ``(module, Class)`` types: those a compiled graph's schemas name.
    Whether any was new."""
    global _built
    new = set(types) - _graph_types
    if new:
        with _lock:
            _graph_types.update(new)
            _built = None
    return bool(new)


def serializer() -> JsonPlusSerializer:
    """The serializer for everything treadle stores, following the process's policy."""
    global _built
    built = _built
    if built is not None:
        return built
    with _lock:
        policy = _policy
        listed = policy.allowed_msgpack_modules
        # Explicit (never LangGraph's unset default), so LANGGRAPH_STRICT_MSGPACK does not
        # decide it; None is LangGraph's "safe types only".
        msgpack: tuple[tuple[str, ...], ...] | Literal[True] | None = True
        if listed is not True:
            msgpack = tuple(sorted(listed | _graph_types)) or None
        json_allowed = policy.allowed_json_modules
        built = _built = _Serializer(
            pickle_fallback=policy.pickle_fallback,
            allowed_json_modules=True if json_allowed is True else (sorted(json_allowed) or None),
            allowed_msgpack_modules=msgpack,
        )
    return built
