"""Both dialects' query files define the same names; the query-file format is parsed as documented."""

from __future__ import annotations

import pytest

from treadle.store.connector import Sql, load_queries, parse_queries, query_text


def test_both_dialects_define_the_same_query_names() -> None:
    sqlite, postgres = set(load_queries("sqlite")), set(load_queries("postgres"))
    assert sqlite, "no named queries found"
    assert sorted(sqlite - postgres) == [], "named in sqlite.sql only"
    assert sorted(postgres - sqlite) == [], "named in postgres.sql only"


def test_blocks_are_split_on_name_lines_and_lose_comments_and_semicolon() -> None:
    text = "-- header\n-- name: a\n-- what a does\nSELECT 1;\n\n-- name: b_2\nSELECT\n  2\n"
    assert parse_queries(text) == {"a": "SELECT 1", "b_2": "SELECT\n  2"}


def test_a_name_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'a' is defined twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")


def test_composed_sql_passes_through_and_unknown_names_fail_clearly() -> None:
    assert query_text({"a": "SELECT 1"}, "a") == "SELECT 1"
    assert query_text({}, Sql("SELECT 2")) == "SELECT 2"
    with pytest.raises(KeyError, match="no query named 'nope'"):
        query_text({}, "nope")
