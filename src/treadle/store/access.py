"""Access filters: what an authorization handler returned, applied inside the store's SQL.

A handler of ``langgraph_sdk.Auth`` may answer with a filter over a resource's
``metadata`` (threads, assistants, crons). treadle never filters fetched rows in Python:
the filter is compiled here into a ``WHERE`` fragment that the store's get / search /
count / update / delete queries carry, so a row the filter excludes is never read,
changed or counted.

The language (LangGraph's ``FilterType``, plus ``$or`` / ``$and``)::

    {"owner": "u1"}                        metadata.owner == "u1"
    {"owner": {"$eq": "u1"}}               the same
    {"team": {"x": 1}}                     metadata.team == {"x": 1} (a dict without $ keys)
    {"tags": {"$contains": "a"}}           metadata.tags is a list holding "a"
    {"tags": {"$contains": ["a", "b"]}}    ... holding both
    {"$or": [F, ...]}, {"$and": [F, ...]}  any / all of the filters (an empty $or: none)

Several keys in one object must all hold. Anything else (``$ne``, ``$in``, a key that is
not a string, an operator object with no operator) raises
:class:`~treadle.errors.AccessFilterError` when the handler's answer is checked: a server
configuration error (HTTP 500), never an allow.

The SQL is the named fragments ``access_eq``, ``access_contains``, ``access_all`` and
``access_none`` of each dialect's query file; each binds one JSON parameter, renamed per
use (``access_0``, ``access_1``, ...) so a filter may use any number of them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from treadle.errors import AccessFilterError
from treadle.store.connector import Connector

__all__ = ["Access", "compile_access", "filter_keys", "validate"]

#: A filter dict as a handler returns it (None: no filter).
Access = Mapping[str, Any] | None

_OPERATORS = ("$eq", "$contains")
_PARAM = re.compile(r"%\(access\)s|(?<![:\w]):access\b")


def validate(filters: Any) -> None:
    """AccessFilterError unless ``filters`` is a filter this module can apply."""
    _check(filters, "filter")


def _check(filters: Any, where: str) -> None:
    if not isinstance(filters, Mapping):
        raise AccessFilterError(f"an authorization {where} must be a dict, not "
                                f"{type(filters).__name__}")
    for key, value in filters.items():
        if key in ("$or", "$and"):
            if not isinstance(value, list):
                raise AccessFilterError(f"{where}: {key} takes a list of filters")
            for i, sub in enumerate(value):
                _check(sub, f"{where}.{key}[{i}]")
        elif not isinstance(key, str) or key.startswith("$"):
            raise AccessFilterError(f"{where}: unsupported key {key!r} (use a metadata key, "
                                    "$or or $and)")
        elif _is_operators(value):
            if not value or any(op not in _OPERATORS for op in value):
                raise AccessFilterError(
                    f"{where}.{key}: unsupported operator(s) {sorted(map(str, value))!r} "
                    f"(treadle applies {', '.join(_OPERATORS)})")


def filter_keys(filters: Access) -> set[str]:
    """The metadata keys a (valid) filter compares."""
    keys: set[str] = set()
    for key, value in (filters or {}).items():
        if key in ("$or", "$and"):
            for sub in value:
                keys |= filter_keys(sub)
        else:
            keys.add(key)
    return keys


def _is_operators(value: Any) -> bool:
    """An operator object (``{"$eq": ...}``): a dict that is empty or has a ``$`` key (a
    dict without any is a value compared whole)."""
    return isinstance(value, Mapping) and (
        not value or any(isinstance(k, str) and k.startswith("$") for k in value))


def compile_access(db: Connector, filters: Access) -> tuple[str, dict[str, Any]]:
    """``filters`` as a SQL condition over the ``metadata`` column and its parameters
    (``access_all`` for None)."""
    if filters is None:
        return db.sql("access_all"), {}
    validate(filters)
    params: dict[str, Any] = {}
    return _compile(db, filters, params), params


def _compile(db: Connector, filters: Mapping[str, Any], params: dict[str, Any]) -> str:
    parts: list[str] = []
    for key, value in filters.items():
        if key == "$or":
            subs = [_compile(db, sub, params) for sub in value]
            parts.append("(" + " OR ".join(subs) + ")" if subs else db.sql("access_none"))
        elif key == "$and":
            parts.extend(_compile(db, sub, params) for sub in value)
        elif _is_operators(value):
            for op, operand in value.items():
                if op == "$eq":
                    parts.append(_bind(db, "access_eq", {key: operand}, params))
                else:  # $contains: one element, or every element of a list
                    for item in operand if isinstance(operand, list) else [operand]:
                        parts.append(_bind(db, "access_contains", {key: item}, params))
        else:
            parts.append(_bind(db, "access_eq", {key: value}, params))
    if not parts:
        return db.sql("access_all")
    return "(" + " AND ".join(parts) + ")"


def _bind(db: Connector, fragment: str, value: dict[str, Any], params: dict[str, Any]) -> str:
    from treadle.store.records import dump_json

    name = f"access_{len(params)}"
    params[name] = dump_json(value)

    def rename(found: re.Match[str]) -> str:
        return f"%({name})s" if found.group(0).startswith("%") else f":{name}"

    return _PARAM.sub(rename, db.sql(fragment))
