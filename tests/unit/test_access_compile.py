"""Compiling access filters into SQL (treadle.store.access); the rows they match are in the
store contract (tests/access_contract.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from treadle.errors import AccessFilterError
from treadle.store import open_store
from treadle.store.access import compile_access, validate
from treadle.store.base import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/a.db")
    try:
        yield s
    finally:
        s.close()


def test_each_condition_binds_its_own_parameter(store: Store) -> None:
    sql, params = compile_access(store.db, {
        "a": 1, "b": {"$contains": ["x", "y"]}, "$or": [{"c": "z"}, {"d": {"$eq": None}}]})
    assert sorted(params) == [f"access_{i}" for i in range(5)]
    assert [json.loads(params[f"access_{i}"]) for i in range(5)] == [
        {"a": 1}, {"b": "x"}, {"b": "y"}, {"c": "z"}, {"d": None}]
    for name in params:
        assert f":{name}" in sql
    assert ":access " not in sql and " OR " in sql


def test_values_are_parameters_never_sql(store: Store) -> None:
    sql, params = compile_access(store.db, {"k'; DROP TABLE x; --": "v' OR 1=1 --"})
    assert "DROP" not in sql and "OR 1=1" not in sql
    assert json.loads(params["access_0"]) == {"k'; DROP TABLE x; --": "v' OR 1=1 --"}


def test_none_and_empty_filters_match_everything(store: Store) -> None:
    assert compile_access(store.db, None) == (store.db.sql("access_all"), {})
    assert compile_access(store.db, {}) == (store.db.sql("access_all"), {})
    assert compile_access(store.db, {"$or": []})[0] == f"({store.db.sql('access_none')})"


@pytest.mark.parametrize(("bad", "message"), [
    ({"a": {"$in": [1]}}, "unsupported operator"),
    ({"a": {"$eq": 1, "b": 2}}, "unsupported operator"),
    ({"$not": {"a": 1}}, "unsupported key '\\$not'"),
    ({"$or": {"a": 1}}, "\\$or takes a list"),
    ({"$and": [1]}, "must be a dict"),
    ([{"a": 1}], "must be a dict"),
])
def test_what_cannot_be_applied_is_refused(bad: Any, message: str) -> None:
    with pytest.raises(AccessFilterError, match=message):
        validate(bad)
