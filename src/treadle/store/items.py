"""The item store: LangGraph's long-term memory (key-value items) in treadle's database.

:class:`ItemStore` lives beside the checkpoints and the run queue, written once over the
connector (its queries are the ``items_*`` and ``item_*`` ones of each dialect's query
file); :class:`treadle.store.memory.TreadleStore` adapts it to LangGraph's ``BaseStore``.
Reads take no write lock: a read that must refresh TTLs does so afterwards, in a short
write, only when an item it found has a TTL. A batch of writes is one transaction of at
most two statements, whatever its size.

Items
    A JSON object (``value``) stored under a namespace (a tuple of labels: non-empty
    strings without ``.``) and a ``key``. Namespaces are stored as their labels joined
    by ``.``. Times are Unix seconds (float) from the *database's* clock.

TTL
    An item written with ``ttl_minutes`` expires that many minutes after its last write
    or its last read that refreshed it (reads refresh when asked to). Expired items are
    invisible to every read at once; :meth:`ItemStore.sweep_items` deletes them. A write
    over an expired item creates it anew (a new ``created_at``).

Filters
    A search filter holds conditions on top-level keys of the value (see
    :func:`parse_filter`): equality (``{"k": v}`` or ``$eq``) compares JSON values
    (numbers by value, objects and arrays exactly; ``None`` matches a JSON null or a
    missing key), ``$ne`` is its negation, and ``$gt`` / ``$gte`` / ``$lt`` / ``$lte``
    compare numbers with numbers and strings with strings (by code point); an item
    whose value has another type there does not match.

Order
    Searches return the most recently updated items first (then by namespace and key);
    namespaces are listed sorted by their dotted text, bytewise (as LangGraph's own
    the PostgreSQL store orders them).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from treadle.errors import InputError, StoreError
from treadle.store.connector import Connector, Row, Sql, Tx
from treadle.store.encryption import AtRest
from treadle.store.vectors import SemanticIndex, VectorRow, encode, rank, rank_scored

__all__ = [
    "COMPARISONS",
    "OPERATORS",
    "Condition",
    "ItemKey",
    "ItemRow",
    "ItemSearch",
    "ItemStore",
    "ItemWrite",
    "NamespaceMatch",
    "NamespaceQuery",
    "encode_value",
    "join_namespace",
    "last_writes",
    "parse_filter",
    "split_namespace",
]

OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte")
COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
WILDCARD = "*"

ItemKey = tuple[tuple[str, ...], str]  # (namespace, key)


# --- namespaces and values -------------------------------------------------------------------
def check_namespace(namespace: Sequence[str]) -> tuple[str, ...]:
    """``namespace`` as a tuple, or InputError naming the bad label."""
    labels = tuple(namespace)
    for label in labels:
        if not isinstance(label, str) or not label or "." in label or "\x00" in label:
            raise InputError(
                f"bad namespace label {label!r} in {labels!r}: labels are non-empty strings "
                "without '.'"
            )
    return labels


def join_namespace(namespace: Sequence[str]) -> str:
    return ".".join(namespace)


def split_namespace(text: str) -> tuple[str, ...]:
    return tuple(text.split(".")) if text else ()


def encode_value(value: Any) -> str:
    """A value as stored: JSON object text, keys sorted (equal objects have equal text)."""
    if not isinstance(value, Mapping):
        raise InputError(f"an item's value must be a JSON object (a dict), not {type(value).__name__}")
    return _canonical(dict(value), "the item's value")


def _canonical(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} is not JSON: {exc}") from exc


# --- rows and operations ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ItemRow:
    namespace: tuple[str, ...]
    key: str
    value: dict[str, Any]
    created_at: float
    updated_at: float
    ttl_minutes: float | None
    expires_at: float | None
    score: float | None = None  # a search by query: the cosine similarity (store.index)


@dataclass(frozen=True, slots=True)
class ItemWrite:
    """Put (``value`` is the JSON text of :func:`encode_value`) or delete (``value`` None).

    Build puts with :meth:`put`, which encodes and checks the value."""

    namespace: tuple[str, ...]
    key: str
    value: str | None
    ttl_minutes: float | None = None
    # store.index (treadle.store.vectors): the put's vectors, replacing the item's; None
    # when the store has no index (the vector table is left alone)
    vectors: tuple[VectorRow, ...] | None = None

    def __post_init__(self) -> None:
        check_namespace(self.namespace)
        if not isinstance(self.key, str):
            raise InputError(f"an item's key must be a string, not {type(self.key).__name__}")
        if self.value is not None and not self.namespace:
            raise InputError("an item needs a namespace of at least one label")
        ttl = self.ttl_minutes
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)
                                or not math.isfinite(ttl) or ttl <= 0):
            raise InputError(f"ttl must be a positive number of minutes or None, not {ttl!r}")

    @classmethod
    def put(cls, namespace: Sequence[str], key: str, value: Mapping[str, Any],
            ttl_minutes: float | None = None,
            vectors: Sequence[VectorRow] | None = None) -> ItemWrite:
        return cls(tuple(namespace), key, encode_value(value), ttl_minutes,
                   None if vectors is None else tuple(vectors))

    @classmethod
    def delete(cls, namespace: Sequence[str], key: str) -> ItemWrite:
        return cls(tuple(namespace), key, None)


def last_writes(writes: Sequence[ItemWrite]) -> list[ItemWrite]:
    """The last write of each item, in the order of first appearance."""
    return list({(w.namespace, w.key): w for w in writes}.values())


@dataclass(frozen=True, slots=True)
class Condition:
    """``value[key] <op> operand``; see the module docstring for the semantics."""

    key: str
    op: str  # one of OPERATORS
    operand: Any

    @property
    def operand_json(self) -> str:
        return _canonical(self.operand, f"the filter value of {self.key!r}")


def parse_filter(filter: Mapping[str, Any] | None) -> tuple[Condition, ...]:
    """LangGraph's search filter as conditions, or InputError saying what is wrong.

    ``{"k": v}`` is ``v`` equals ``value["k"]``; ``{"k": {"$gt": 1, "$lt": 5}}`` holds
    operators (all of OPERATORS), all of which must hold."""
    if filter is None:
        return ()
    if not isinstance(filter, Mapping):
        raise InputError(f"a filter must be an object, not {type(filter).__name__}")
    conditions: list[Condition] = []
    for key, spec in filter.items():
        if not isinstance(key, str):
            raise InputError(f"filter keys must be strings, not {key!r}")
        ops = [k for k in spec if isinstance(k, str) and k.startswith("$")] \
            if isinstance(spec, Mapping) else []
        if not ops:
            conditions.append(Condition(key, "$eq", spec))
            continue
        if len(ops) != len(spec):
            raise InputError(f"filter on {key!r} mixes operators ({', '.join(ops)}) with plain keys")
        for op, operand in spec.items():
            if op not in OPERATORS:
                raise InputError(f"unknown filter operator {op!r} on {key!r} "
                                 f"(use one of {', '.join(OPERATORS)})")
            if op in COMPARISONS and not _comparable(operand):
                raise InputError(f"{op} on {key!r} needs a number or a string, got {operand!r}")
            conditions.append(Condition(key, op, operand))
    for c in conditions:
        c.operand_json  # noqa: B018 - raises InputError for an operand that is not JSON
    return tuple(conditions)


def _comparable(operand: Any) -> bool:
    if isinstance(operand, bool):
        return False
    if isinstance(operand, int | float):
        return math.isfinite(operand)
    return isinstance(operand, str)


@dataclass(frozen=True, slots=True)
class ItemSearch:
    prefix: tuple[str, ...] = ()
    conditions: tuple[Condition, ...] = ()
    limit: int = 10
    offset: int = 0
    refresh_ttl: bool = True
    query_vector: tuple[float, ...] | None = None  # rank by it (treadle.store.vectors)

    def __post_init__(self) -> None:
        check_namespace(self.prefix)
        _check_page(self.limit, self.offset)


@dataclass(frozen=True, slots=True)
class NamespaceMatch:
    """Namespaces starting (``prefix``) or ending (``suffix``) with ``path``; a ``*``
    label matches any one label. An empty path matches every namespace."""

    kind: Literal["prefix", "suffix"]
    path: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("prefix", "suffix"):
            raise InputError(f"unknown namespace match {self.kind!r} (use prefix or suffix)")
        check_namespace(self.path)


@dataclass(frozen=True, slots=True)
class NamespaceQuery:
    matches: tuple[NamespaceMatch, ...] = ()
    max_depth: int | None = None  # namespaces are cut to this many labels (then deduplicated)
    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        if self.max_depth is not None and (isinstance(self.max_depth, bool)
                                           or not isinstance(self.max_depth, int)
                                           or self.max_depth < 1):
            raise InputError(f"max_depth must be a positive integer or None, not {self.max_depth!r}")
        _check_page(self.limit, self.offset)

    def literal_prefix(self) -> tuple[str, ...]:
        """The longest run of leading labels (before any ``*``) some prefix match fixes."""
        best: tuple[str, ...] = ()
        for m in self.matches:
            if m.kind == "prefix":
                n = m.path.index(WILDCARD) if WILDCARD in m.path else len(m.path)
                if n > len(best):
                    best = m.path[:n]
        return best

    def min_depth(self) -> int:
        return max((len(m.path) for m in self.matches), default=0)

    def label_checks(self) -> list[tuple[int, str]]:
        """``(position, label)`` pairs every namespace must have, beyond its
        :meth:`literal_prefix` and :meth:`min_depth`: position ``i >= 0`` counts from the
        first label, ``-1`` is the last."""
        literal = self.literal_prefix()
        checks: list[tuple[int, str]] = []
        for m in self.matches:
            n = len(m.path)
            for i, label in enumerate(m.path):
                if label == WILDCARD:
                    continue
                if m.kind == "suffix":
                    checks.append((i - n, label))
                elif i >= len(literal) or literal[i] != label:
                    checks.append((i, label))
        return checks


def _check_page(limit: int, offset: int) -> None:
    for name, n in (("limit", limit), ("offset", offset)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError(f"{name} must be a non-negative integer, not {n!r}")


# --- the store --------------------------------------------------------------------------------
def _row(r: Sequence[Any], a: AtRest) -> ItemRow:
    return ItemRow(split_namespace(r[0]), r[1], a.open_json(json.loads(r[2]), "store", "value"),
                   r[3], r[4], r[5], r[6])


def _pairs(keys: Sequence[ItemKey]) -> tuple[list[str], list[str]]:
    """Keys as the two arrays the queries take: namespaces, keys."""
    return [join_namespace(ns) for ns, _ in keys], [key for _, key in keys]


def _prefix(namespace: tuple[str, ...]) -> list[str]:
    exact = join_namespace(namespace)
    return [exact, exact + ".", exact + "/"]  # '/' follows '.'


class ItemStore:
    """Key-value items with TTLs, over ``self.db``; every write call is one transaction."""

    db: Connector
    at_rest: AtRest
    item_index: SemanticIndex | None = None  # langgraph.json store.index, set at start-up
    _vec: str | None = None  # the native ranking: "sqlite-vec", "pgvector" or "" (None: not asked)

    def get_items(self, keys: Sequence[ItemKey], *, refresh_ttl: bool = True) -> list[ItemRow | None]:
        """The live items at ``keys`` (None where there is none), in the order asked.

        With ``refresh_ttl``, the items found that have a TTL expire ``ttl_minutes`` from
        now (the rows returned show the new ``expires_at``)."""
        if not keys:
            return []
        wanted = list(dict.fromkeys((tuple(ns), key) for ns, key in keys))
        rows = self.db.all("reading items", "items_get", _pairs(wanted))
        found = {(r.namespace, r.key): r for r in (_row(x, self.at_rest) for x in rows)}
        if refresh_ttl:
            self._refresh(found)
        return [found.get((tuple(ns), key)) for ns, key in keys]

    def search_items(self, search: ItemSearch) -> list[ItemRow]:
        """Live items under ``search.prefix`` meeting every condition, most recently
        updated first, paged by ``limit`` / ``offset``; refreshes TTLs as get_items."""
        ranked = search.query_vector is not None
        sql = [self.db.sql("items_search_vectors" if ranked else "items_search")]
        params: list[Any] = []
        if search.prefix:
            sql.append(self.db.sql("items_where_prefix"))
            params += _prefix(search.prefix)
        if search.conditions and self.at_rest.enabled:
            raise InputError("store items cannot be searched with a filter while encryption "
                             "at rest is on (their values are encrypted): search by namespace")
        for c in search.conditions:
            fragment, values = self._condition(c)
            sql.append("AND " + fragment)
            params += values
        if ranked:
            sql.append(self.db.sql("items_search_vectors_order"))
            rows, scores = self._ranked(search, Sql("\n".join(sql)), params)
        else:
            sql.append(self.db.sql("items_search_page"))
            params += [search.limit, search.offset]
            rows = [_row(r, self.at_rest)
                    for r in self.db.all("searching items", Sql("\n".join(sql)), params)]
            scores = [None] * len(rows)
        if search.refresh_ttl:
            found = {(r.namespace, r.key): r for r in rows}
            self._refresh(found)
            rows = [found[(r.namespace, r.key)] for r in rows]
        return [dataclasses.replace(r, score=s) if s is not None else r
                for r, s in zip(rows, scores, strict=True)]

    def _ranked(self, search: ItemSearch, sql: Sql, params: list[Any]
                ) -> tuple[list[ItemRow], list[float | None]]:
        """The candidates of ``sql`` (one row per vector) ranked by ``search.query_vector``,
        paged: exact cosine over every candidate, in SQL by sqlite-vec or pgvector where
        there is one, else here (treadle.store.vectors)."""
        query = search.query_vector
        assert query is not None
        native = self._native_ranking() if any(query) else ""
        if native == "pgvector":  # ranked and paged in SQL
            rows = self.db.all("searching items by similarity (pgvector)", Sql("\n".join([
                self.db.sql("postgres_items_pgvector_ranked"), sql,
                self.db.sql("postgres_items_pgvector_page")])),
                [list(query), *params, search.limit, search.offset])
            return [_row(r, self.at_rest) for r in rows], [r[7] for r in rows]
        items: dict[tuple[str, str], Sequence[Any]] = {}  # one per item, its vectors' rows
        if native:  # sqlite-vec: scored in SQL, ranked here
            rows = self.db.all("searching items by similarity (sqlite-vec)", Sql(
                f"{self.db.sql('sqlite_items_vec_scored')}\n{sql}\n) AS c"), [encode(query), *params])
            ranked = rank_scored([(items.setdefault((r[0], r[1]), r[:7]), r[7]) for r in rows])
        else:
            ranked = rank(query, [(items.setdefault((r[0], r[1]), r[:7]), r[7]) for r in
                                  self.db.all("searching items by similarity", sql, params)])
        page = ranked[search.offset:search.offset + search.limit]
        return [_row(r, self.at_rest) for r, _ in page], [score for _, score in page]

    def _native_ranking(self) -> str:
        """"sqlite-vec" (loaded by SQLite's connections), "pgvector" (installed in this
        database) or "" (treadle ranks in Python); asked once per store."""
        if self._vec is None:
            sqlite = self.db.dialect == "sqlite"
            try:
                row = self.db.one("checking for sqlite-vec or pgvector", "sqlite_vec_version"
                                  if sqlite else "postgres_pgvector_installed")
            except StoreError:
                row = None
            found = row is not None and (sqlite or bool(row[0]))
            self._vec = ("sqlite-vec" if sqlite else "pgvector") if found else ""
        return self._vec

    def list_item_namespaces(self, query: NamespaceQuery) -> list[tuple[str, ...]]:
        """The distinct namespaces holding live items that meet every match, each cut to
        ``max_depth`` labels, sorted (see the module docstring), paged."""
        sql = [self.db.sql("items_namespaces")]
        params: list[Any] = [query.max_depth]
        literal = query.literal_prefix()
        if literal:
            sql.append(self.db.sql("items_where_prefix"))
            params += _prefix(literal)
        sql.append(self.db.sql("items_namespaces_filter"))
        if query.min_depth() > len(literal):
            sql.append(self.db.sql("items_where_min_depth"))
            params.append(query.min_depth())
        for position, label in query.label_checks():
            sql.append(self.db.sql("items_where_label" if position >= 0
                                   else "items_where_label_from_end"))
            params += [position, label]
        sql.append(self.db.sql("items_namespaces_page"))
        params += [query.limit, query.offset]
        rows = self.db.all("listing namespaces", Sql("\n".join(sql)), params)
        return [split_namespace(r[0]) for r in rows]

    def write_items(self, writes: Sequence[ItemWrite]) -> None:
        """Apply puts and deletes in one transaction; the last write of an item wins."""
        final = last_writes(writes)
        if not final:
            return
        deletes = [(w.namespace, w.key) for w in final if w.value is None]
        indexed = [w for w in final if w.value is not None and w.vectors is not None]
        if any(w.vectors for w in indexed) and self.at_rest.enabled:
            raise InputError("store items cannot be indexed for semantic search while "
                             "encryption at rest is on (vectors reveal the text): remove "
                             "store.index or put with index=False")
        vectors = [(join_namespace(w.namespace), w.key, field, n, data)
                   for w in indexed for field, n, data in w.vectors or ()]
        puts = [{"ns": join_namespace(w.namespace), "labels": list(w.namespace), "k": w.key,
                 "v": self.at_rest.seal_json(w.value, "store", "value"),
                 "ttl": w.ttl_minutes} for w in final if w.value is not None]

        def write(tx: Tx) -> None:
            if deletes:
                tx.execute("items_delete", _pairs(deletes))
            if puts:
                tx.execute("items_put", (json.dumps(puts, ensure_ascii=False),))
            if indexed:
                tx.execute("item_vectors_delete", _pairs([(w.namespace, w.key) for w in indexed]))
            if vectors:
                tx.many("item_vectors_put", vectors)

        self.db.transact(f"writing {len(final)} item(s)", write)

    def vector_ranking(self) -> str:
        """How searches by query are ranked here, for the start-up log."""
        native = self._native_ranking()
        if native:
            return f"exact cosine computed in SQL by {native} over the candidate items"
        if self.db.dialect == "postgres":
            return ("exact cosine computed by treadle over the candidate items; pgvector is "
                    "not installed in this database (CREATE EXTENSION vector)")
        return ("exact cosine computed by treadle over the candidate items; this Python's "
                "sqlite3 cannot load sqlite-vec")

    def sweep_items(self) -> int:
        """Delete expired items; return how many."""
        return self.db.execute("deleting expired items", "items_sweep")

    def _refresh(self, found: dict[ItemKey, ItemRow]) -> None:
        """Extend the TTLs of the items in ``found`` that have one; update their rows."""
        keys = [k for k, r in found.items() if r.ttl_minutes is not None]
        if not keys:
            return
        refreshed: list[Row] = self.db.transact(
            f"refreshing the TTL of {len(keys)} item(s)",
            lambda tx: tx.all("items_refresh", _pairs(keys)))
        for ns, key, expires_at in refreshed:
            k = (split_namespace(ns), key)
            row = found.get(k)
            if row is not None:
                found[k] = dataclasses.replace(row, expires_at=expires_at)

    def _condition(self, c: Condition) -> tuple[str, list[Any]]:
        """``c`` as SQL over the value ``i.value``, with its parameters."""
        x = c.operand
        if c.op in COMPARISONS:
            name, operand = ("item_compare_text", x) if isinstance(x, str) \
                else ("item_compare_number", c.operand_json)
            sql = self.db.sql(name).replace("{op}", COMPARISONS[c.op])
            return sql, [c.key, operand]
        if x is None:
            sql, params = self.db.sql("item_eq_null"), [c.key]
        else:
            kind = ("bool" if isinstance(x, bool) else "number" if isinstance(x, int | float)
                    else "text" if isinstance(x, str) else "json")
            sql, params = self.db.sql(f"item_eq_{kind}"), [c.key, c.operand_json]
        return (f"NOT ({sql})" if c.op == "$ne" else sql), params
