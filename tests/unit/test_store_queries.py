"""Both dialects' query files define the same names; the query-file format is parsed as documented."""

from __future__ import annotations

import pytest

from treadle.store.connector import Sql, load_queries, parse_queries, query_text


def test_both_dialects_define_the_same_query_names() -> None:
    """A name is in both files, unless it is named after its dialect (``sqlite_...``,
    ``postgres_...``): a driver's own hot path (the group committer's batch apply)."""
    sqlite, postgres = set(load_queries("sqlite")), set(load_queries("postgres"))
    assert sqlite, "no named queries found"
    assert sorted(n for n in sqlite - postgres if not n.startswith("sqlite_")) == [], \
        "named in sqlite.sql only"
    assert sorted(n for n in postgres - sqlite if not n.startswith("postgres_")) == [], \
        "named in postgres.sql only"
    assert not {n for n in sqlite if n.startswith("postgres_")}, "a postgres_ name in sqlite.sql"
    assert not {n for n in postgres if n.startswith("sqlite_")}, "a sqlite_ name in postgres.sql"


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
