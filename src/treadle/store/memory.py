"""LangGraph's long-term memory (``BaseStore``) on treadle's database.

    from treadle.store.memory import TreadleStore
    from treadle.store import open_store

    graph = builder.compile(store=TreadleStore(open_store("sqlite:///app.db")))

Nodes then reach it as ``store: BaseStore`` (or ``langgraph.config.get_store()``); the
items live in the same database as the checkpoints and the run queue, so every process
that opens the store sees them. Semantics follow LangGraph's own stores (see
:mod:`treadle.store.items` for filters, ordering and TTLs):

* In one :meth:`~TreadleStore.batch`, reads see the store as it was before the batch's
  writes; the writes then commit in one transaction, the last write of an item winning.
* TTLs are in minutes (``put(..., ttl=5)``); reads refresh them unless
  ``refresh_ttl=False`` (or ``TTLConfig(refresh_on_read=False)``); expired items are
  invisible at once and deleted by :meth:`~TreadleStore.sweep_expired`.
* There is no vector index: ``index`` is accepted and ignored, and a search ``query``
  is ignored (results are filtered and ordered as without one), as in LangGraph's
  ``InMemoryStore`` configured without an index.

Bad input raises ``langgraph.store.base.InvalidNamespaceError`` (a ``ValueError``) for
namespaces, and :class:`~treadle.errors.InputError` for values, filters and paging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from datetime import UTC, datetime

from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)

from treadle.store.items import (
    ItemKey,
    ItemRow,
    ItemSearch,
    ItemStore,
    ItemWrite,
    NamespaceMatch,
    NamespaceQuery,
    parse_filter,
)

__all__ = ["TreadleStore"]


class TreadleStore(BaseStore):
    """A LangGraph ``BaseStore`` over a treadle store (any backend).

    ``ttl`` is LangGraph's ``TTLConfig``: ``default_ttl`` (minutes) applies to puts
    that give none, ``refresh_on_read`` (default True) to reads that do not say. The
    store is not closed with this object: its opener closes it.
    """

    supports_ttl = True

    def __init__(self, store: ItemStore, *, ttl: TTLConfig | None = None) -> None:
        self.store = store
        self.ttl_config = ttl

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        results: list[Result] = [None] * len(ops)
        gets: dict[bool, list[tuple[int, ItemKey]]] = {}
        searches: list[tuple[int, ItemSearch]] = []
        listings: list[tuple[int, NamespaceQuery]] = []
        writes: list[ItemWrite] = []
        # Check every operation before touching the database: a bad one fails the batch.
        for i, op in enumerate(ops):
            validate_op_namespace(op)
            if isinstance(op, GetOp):
                gets.setdefault(op.refresh_ttl, []).append((i, (op.namespace, op.key)))
            elif isinstance(op, SearchOp):
                searches.append((i, ItemSearch(
                    tuple(op.namespace_prefix), parse_filter(op.filter), op.limit, op.offset,
                    op.refresh_ttl,
                )))
            elif isinstance(op, ListNamespacesOp):
                listings.append((i, NamespaceQuery(
                    tuple(NamespaceMatch(m.match_type, tuple(m.path))
                          for m in op.match_conditions or ()),
                    op.max_depth, op.limit, op.offset,
                )))
            elif isinstance(op, PutOp):
                writes.append(_write(op))
            else:
                raise TypeError(f"unknown store operation {type(op).__name__}")
        for refresh, wanted in gets.items():
            rows = self.store.get_items([key for _, key in wanted], refresh_ttl=refresh)
            for (i, _), row in zip(wanted, rows, strict=True):
                results[i] = _item(row) if row is not None else None
        for i, search in searches:
            results[i] = [_search_item(r) for r in self.store.search_items(search)]
        for i, query in listings:
            results[i] = self.store.list_item_namespaces(query)
        if writes:
            self.store.write_items(writes)
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))

    def sweep_expired(self) -> int:
        """Delete the expired items; return how many. Reads never see them anyway, so
        this only reclaims space: run it now and then."""
        return self.store.sweep_items()

    async def asweep_expired(self) -> int:
        return await asyncio.to_thread(self.sweep_expired)

    def __repr__(self) -> str:
        return f"TreadleStore({self.store!r})"


def _write(op: PutOp) -> ItemWrite:
    if op.value is None:
        return ItemWrite.delete(op.namespace, op.key)
    if not op.namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    if op.namespace[0] == "langgraph":
        raise InvalidNamespaceError(
            f'Root label for namespace cannot be "langgraph". Got: {op.namespace}'
        )
    return ItemWrite.put(op.namespace, op.key, op.value, op.ttl)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _item(row: ItemRow) -> Item:
    return Item(value=row.value, key=row.key, namespace=row.namespace,
                created_at=_when(row.created_at), updated_at=_when(row.updated_at))


def _search_item(row: ItemRow) -> SearchItem:
    return SearchItem(row.namespace, row.key, row.value, _when(row.created_at),
                      _when(row.updated_at))
