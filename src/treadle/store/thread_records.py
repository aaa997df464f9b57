"""Threads: the API's view of a thread.

A thread record holds metadata, a status (``idle | busy | interrupted | error``) and the
latest state values and interrupts, kept in step by the workers
(:meth:`ThreadStore.set_thread_state`, or the named query ``thread_state`` inside the run
queue's own transactions: :func:`thread_state_params`). The checkpoints themselves stay in
the checkpoint store; deleting a thread means ``Store.delete_thread`` (checkpoints) and
:meth:`ThreadStore.delete_thread_record` (this record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from treadle.errors import InputError
from treadle.store.access import Access
from treadle.store.connector import Connector, Row, Tx
from treadle.store.encryption import AtRest
from treadle.store.records import (
    UNSET,
    Search,
    Unset,
    check_choice,
    create,
    dump_json,
    load_json,
    merge_metadata,
    patch,
    scoped,
)
from treadle.store.retention import ThreadTTL, ttl_params

__all__ = ["THREAD_SORT", "THREAD_STATUSES", "Thread", "ThreadStore", "ThreadUpdate",
           "thread_state_params"]

THREAD_STATUSES = ("idle", "busy", "interrupted", "error")
THREAD_SORT = ("thread_id", "status", "created_at", "updated_at")


@dataclass(slots=True)
class Thread:
    thread_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    status: str = "idle"  # see THREAD_STATUSES
    values: Any = None  # the latest state values as JSON, or None
    interrupts: dict[str, Any] = field(default_factory=dict)  # {task_id: [interrupt, ...]}
    config: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created_at: float = 0.0  # set by the store
    updated_at: float = 0.0  # set by the store


@dataclass(slots=True)
class ThreadUpdate:
    """A thread record's new state, written with a run's status change (see
    ``finish_run``): one transaction, not two."""

    thread_id: str
    status: str
    values: Any = UNSET
    interrupts: dict[str, Any] | None = None
    error: str | None = None


def thread_state_params(u: ThreadUpdate, at_rest: AtRest) -> dict[str, Any]:
    """The parameters of the named query ``thread_state`` recording ``u`` (for callers in
    their own transaction), sealed by ``at_rest``; InputError for a status outside
    THREAD_STATUSES."""
    check_choice("thread status", u.status, THREAD_STATUSES)
    given = not isinstance(u.values, Unset)
    return {"thread_id": u.thread_id, "status": u.status, "set_values": given,
            "values": at_rest.seal_json(dump_json(u.values), "thread", "values")
            if given and u.values is not None else None,
            "interrupts": at_rest.seal_json(dump_json(u.interrupts), "thread", "interrupts")
            if u.interrupts else "{}",
            "error": at_rest.seal_text(u.error, "thread", "error")}


def _thread(row: Sequence[Any], a: AtRest) -> Thread:
    return Thread(row[0], a.open_metadata(load_json(row[1]), "thread"), row[2],
                  a.open_json(load_json(row[3]), "thread", "values"),
                  a.open_json(load_json(row[4]), "thread", "interrupts"),
                  load_json(row[5]), a.open_text(row[6], "thread", "error"), row[7], row[8])


class ThreadStore:
    """Thread records. Every method is one short transaction."""

    db: Connector
    at_rest: AtRest
    default_thread_ttl: ThreadTTL | None = None  # see treadle.store.retention

    def _t(self, row: Sequence[Any]) -> Thread:
        return _thread(row, self.at_rest)

    def put_thread(self, t: Thread, *, if_exists: str = "raise",
                   ttl: ThreadTTL | None = None) -> Thread:
        """Create ``t`` (the store sets its times); ``if_exists`` as for assistants. A new
        thread gets ``ttl``, else the store's ``default_thread_ttl`` (none: it never
        expires); an existing one keeps its own."""
        check_choice("thread status", t.status, THREAD_STATUSES)
        ttl = ttl or self.default_thread_ttl
        then = None if ttl is None else (
            lambda tx: tx.execute("thread_ttl_set", ttl_params(t.thread_id, ttl)))
        a = self.at_rest
        params = {"thread_id": t.thread_id,
                  "metadata": dump_json(a.seal_metadata(t.metadata, "thread")),
                  "status": t.status, "values": None if t.values is None
                  else a.seal_json(dump_json(t.values), "thread", "values"),
                  "interrupts": a.seal_json(dump_json(t.interrupts), "thread", "interrupts")
                  if t.interrupts else "{}",
                  "config": dump_json(t.config), "error": a.seal_text(t.error, "thread", "error")}
        return self._t(create(self.db, f"creating thread {t.thread_id}", "thread_insert", params,
                              "thread_get", {"thread_id": t.thread_id}, if_exists, "thread",
                              then))

    def get_thread(self, thread_id: str, *, access: Access = None) -> Thread | None:
        """The thread, or None when it is missing or the access filter ``access``
        (:mod:`treadle.store.access`) excludes it."""
        row = self.db.one(f"reading thread {thread_id}",
                          *scoped(self.db, "thread_get", {"thread_id": thread_id}, self.at_rest.guard(access)))
        return _thread(row, self.at_rest) if row else None

    def patch_thread(
        self, thread_id: str, *, metadata: dict[str, Any] | None = None, access: Access = None
    ) -> Thread | None:
        """Merge ``metadata`` into the thread's and bump ``updated_at``; None for an
        unknown id (or one ``access`` excludes)."""

        def update(tx: Tx, row: Row) -> Row | None:
            merged = merge_metadata(_thread(row, self.at_rest).metadata, metadata)
            sealed = self.at_rest.seal_metadata(merged, "thread")
            return tx.one("thread_update_metadata",
                          {"thread_id": thread_id, "metadata": dump_json(sealed)})

        row = patch(self.db, f"updating thread {thread_id}", "thread_lock",
                    {"thread_id": thread_id}, update, get="thread_get", access=self.at_rest.guard(access))
        return _thread(row, self.at_rest) if row else None

    def delete_thread_record(self, thread_id: str, *, access: Access = None) -> bool:
        """Delete the thread's record (not its checkpoints); False for an unknown id (or
        one ``access`` excludes)."""
        return self.db.execute(f"deleting thread {thread_id}",
                               *scoped(self.db, "thread_delete", {"thread_id": thread_id},
                                       self.at_rest.guard(access))) == 1

    def _thread_search(self, metadata: dict[str, Any] | None, values: dict[str, Any] | None,
                       status: str | None, access: Access) -> Search:
        if values and self.at_rest.enabled:
            raise InputError("threads cannot be searched by values while encryption at rest "
                             "is on (values are encrypted): filter by metadata instead")
        self.at_rest.check_filterable(metadata or (), by_auth=False)
        return (Search(self.db).access(self.at_rest.guard(access))
                .contains("resource_where_metadata", "metadata", metadata)
                .contains("thread_where_values", "values", values)
                .match("thread_where_status", "status", status))

    def search_threads(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: str | None = None,
        ids: list[str] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
        access: Access = None,
    ) -> list[Thread]:
        """``metadata`` and ``values``: see :mod:`treadle.store.resources` (a thread whose
        values are not a JSON object never matches a non-empty ``values`` filter); ``ids``:
        only these threads (an empty list matches none); ``access``: an access filter."""
        search = self._thread_search(metadata, values, status, access).match(
            "thread_where_ids", "ids", None if ids is None else [str(i) for i in ids])
        rows = search.sorted("searching threads", "thread_search", THREAD_SORT, sort_by,
                             sort_order, limit, offset)
        return [_thread(r, self.at_rest) for r in rows]

    def count_threads(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        values: dict[str, Any] | None = None,
        status: str | None = None,
        access: Access = None,
    ) -> int:
        return self._thread_search(metadata, values, status, access).count(
            "counting threads", "thread_count")

    def set_thread_state(
        self,
        thread_id: str,
        *,
        status: str,
        values: Any = UNSET,
        interrupts: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bool:
        """Record a thread's new status (workers call this when a run starts and ends)
        and bump ``updated_at``. ``values`` stays as it is unless given (None stores
        None); ``interrupts`` and ``error`` are replaced (None clears them). False when
        the thread has no record (threads not made through the API)."""
        params = thread_state_params(ThreadUpdate(thread_id, status, values, interrupts, error),
                                     self.at_rest)
        return self.db.execute(f"recording the state of thread {thread_id}", "thread_state",
                               params) == 1

    def ensure_thread(self, thread_id: str, *, metadata: dict[str, Any] | None = None) -> Thread:
        """The thread's record, created (``idle``, with ``metadata``) if missing."""
        return self.put_thread(Thread(thread_id, metadata or {}), if_exists="do_nothing")
