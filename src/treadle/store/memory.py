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
* With an ``index`` (langgraph.json ``store.index``, :mod:`treadle.store.vectors`), puts
  embed the texts at the index's fields (or the put's ``index`` list; ``index=False``: none)
  and a search ``query`` ranks by cosine similarity (``SearchItem.score``). Without one,
  ``index`` and ``query`` are ignored, as in LangGraph's ``InMemoryStore`` without an index.

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
from treadle.store.vectors import SemanticIndex, VectorRow, encode

__all__ = ["TreadleStore"]


class TreadleStore(BaseStore):
    """A LangGraph ``BaseStore`` over a treadle store (any backend).

    ``ttl`` is LangGraph's ``TTLConfig``: ``default_ttl`` (minutes) applies to puts
    that give none, ``refresh_on_read`` (default True) to reads that do not say. The
    store is not closed with this object: its opener closes it.
    """

    supports_ttl = True

    def __init__(self, store: ItemStore, *, ttl: TTLConfig | None = None,
                 index: SemanticIndex | None = None) -> None:
        self.store = store
        self.ttl_config = ttl
        self.semantic = index if index is not None else getattr(store, "item_index", None)
        if self.semantic is not None:
            self.index_config = {"dims": self.semantic.dims, "embed": self.semantic.embeddings,
                                 "fields": list(self.semantic.fields)}
            self.embeddings = self.semantic.embeddings

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        texts = self._texts(ops)
        vectors = self.semantic.embeddings.embed_documents(texts) \
            if texts and self.semantic else []
        return self._run(ops, texts, vectors)

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        texts = self._texts(ops)
        vectors = await self.semantic.embeddings.aembed_documents(texts) \
            if texts and self.semantic else []
        return await asyncio.to_thread(self._run, ops, texts, vectors)

    def _texts(self, ops: list[Op]) -> list[str]:
        """The texts the batch needs embedded: search queries, then indexed put fields."""
        if self.semantic is None:
            return []
        texts: list[str] = []
        for op in ops:
            if isinstance(op, SearchOp) and op.query:
                texts.append(op.query)
            elif isinstance(op, PutOp) and op.value is not None:
                if not isinstance(op.value, dict):
                    continue  # refused by _write, with its message
                texts += [text for _, _, text in self.semantic.texts(op.value, op.index)]
        return texts

    def _run(self, ops: list[Op], texts: list[str], embedded: list[list[float]]
             ) -> list[Result]:
        vectors = iter(self.semantic.check(embedded, len(texts)) if self.semantic else [])
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
                query_vector = tuple(next(vectors)) if self.semantic and op.query else None
                searches.append((i, ItemSearch(
                    tuple(op.namespace_prefix), parse_filter(op.filter), op.limit, op.offset,
                    op.refresh_ttl, query_vector,
                )))
            elif isinstance(op, ListNamespacesOp):
                listings.append((i, NamespaceQuery(
                    tuple(NamespaceMatch(m.match_type, tuple(m.path))
                          for m in op.match_conditions or ()),
                    op.max_depth, op.limit, op.offset,
                )))
            elif isinstance(op, PutOp):
                put_vectors = None
                if self.semantic is not None and isinstance(op.value, dict):
                    put_vectors = [(field, n, encode(next(vectors)))
                                   for field, n, _ in self.semantic.texts(op.value, op.index)]
                writes.append(_write(op, put_vectors))
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

    def sweep_expired(self) -> int:
        """Delete the expired items; return how many. Reads never see them anyway, so
        this only reclaims space: run it now and then."""
        return self.store.sweep_items()

    async def asweep_expired(self) -> int:
        return await asyncio.to_thread(self.sweep_expired)

    def __repr__(self) -> str:
        return f"TreadleStore({self.store!r})"


def _write(op: PutOp, vectors: list[VectorRow] | None) -> ItemWrite:
    if op.value is None:
        return ItemWrite.delete(op.namespace, op.key)
    if not op.namespace:
        raise InvalidNamespaceError("Namespace cannot be empty.")
    if op.namespace[0] == "langgraph":
        raise InvalidNamespaceError(
            f'Root label for namespace cannot be "langgraph". Got: {op.namespace}'
        )
    return ItemWrite.put(op.namespace, op.key, op.value, op.ttl, vectors)


def _when(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _item(row: ItemRow) -> Item:
    return Item(value=row.value, key=row.key, namespace=row.namespace,
                created_at=_when(row.created_at), updated_at=_when(row.updated_at))


def _search_item(row: ItemRow) -> SearchItem:
    return SearchItem(row.namespace, row.key, row.value, _when(row.created_at),
                      _when(row.updated_at), row.score)
