"""Crons: a schedule that creates a run on every tick.

Schedulers on several replicas may see the same due cron; :meth:`CronStore.advance_cron` is
a compare-and-set of its next tick, so exactly one of them fires it. ``end_time`` and
``next_run_at`` are stored as doubles, so the value read back is bit for bit the one
written and the compare-and-set can compare it exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from treadle.store.access import Access
from treadle.store.connector import Connector, Row, Tx
from treadle.store.encryption import AtRest
from treadle.store.records import (
    UNSET,
    Search,
    Unset,
    create,
    dump_json,
    load_json,
    merge_metadata,
    patch,
    scoped,
)

__all__ = ["CRON_SORT", "Cron", "CronStore", "patch_cron_record"]

CRON_SORT = ("cron_id", "assistant_id", "thread_id", "next_run_at", "created_at", "updated_at")


@dataclass(slots=True)
class Cron:
    cron_id: str
    assistant_id: str
    thread_id: str | None  # None: each tick runs on a new thread
    schedule: str  # a cron expression, interpreted by the scheduler
    payload: dict[str, Any] = field(default_factory=dict)  # the run to create on each tick
    metadata: dict[str, Any] = field(default_factory=dict)
    end_time: float | None = None  # interpreted by the scheduler, not by the store
    next_run_at: float | None = None
    enabled: bool = True
    user_id: str | None = None
    created_at: float = 0.0  # set by the store
    updated_at: float = 0.0  # set by the store


def patch_cron_record(
    current: Cron,
    *,
    schedule: str | None,
    payload: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    end_time: float | None | Unset,
    enabled: bool | None,
    next_run_at: float | None | Unset,
) -> Cron:
    """The record :meth:`CronStore.patch_cron` stores."""
    return dataclasses.replace(
        current,
        schedule=current.schedule if schedule is None else schedule,
        payload=current.payload if payload is None else payload,
        metadata=merge_metadata(current.metadata, metadata),
        end_time=current.end_time if isinstance(end_time, Unset) else end_time,
        enabled=current.enabled if enabled is None else enabled,
        next_run_at=current.next_run_at if isinstance(next_run_at, Unset) else next_run_at,
    )


def _cron(row: Sequence[Any], a: AtRest) -> Cron:
    return Cron(row[0], row[1], row[2], row[3], a.open_json(load_json(row[4]), "cron", "payload"),
                a.open_metadata(load_json(row[5]), "cron"), row[6],
                row[7], bool(row[8]), row[9], row[10], row[11])


def _fields(c: Cron, a: AtRest) -> dict[str, Any]:
    return {"cron_id": c.cron_id, "assistant_id": c.assistant_id, "thread_id": c.thread_id,
            "schedule": c.schedule, "payload": a.seal_json(dump_json(c.payload), "cron", "payload"),
            "metadata": dump_json(a.seal_metadata(c.metadata, "cron")), "end_time": c.end_time,
            "next_run_at": c.next_run_at, "enabled": bool(c.enabled), "user_id": c.user_id}


class CronStore:
    """Crons. Every method is one short transaction."""

    db: Connector
    at_rest: AtRest

    def put_cron(self, c: Cron) -> Cron:
        """Create ``c`` (the store sets its times); ConflictError if the id exists."""
        row = create(self.db, f"creating cron {c.cron_id}", "cron_insert",
                     _fields(c, self.at_rest), "cron_get", {"cron_id": c.cron_id}, "raise", "cron")
        return _cron(row, self.at_rest)

    def get_cron(self, cron_id: str, *, access: Access = None) -> Cron | None:
        """The cron, or None when it is missing or ``access`` excludes it."""
        row = self.db.one(f"reading cron {cron_id}",
                          *scoped(self.db, "cron_get", {"cron_id": cron_id}, self.at_rest.guard(access)))
        return _cron(row, self.at_rest) if row else None

    def patch_cron(
        self,
        cron_id: str,
        *,
        schedule: str | None = None,
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        end_time: float | None | Unset = UNSET,
        enabled: bool | None = None,
        next_run_at: float | None | Unset = UNSET,
        access: Access = None,
    ) -> Cron | None:
        """Change the given fields and bump ``updated_at``; None for an unknown id.
        ``metadata`` is merged; ``end_time`` / ``next_run_at`` may be set to None."""

        def update(tx: Tx, row: Row) -> Row | None:
            new = patch_cron_record(_cron(row, self.at_rest), schedule=schedule, payload=payload,
                                    metadata=metadata, end_time=end_time, enabled=enabled,
                                    next_run_at=next_run_at)
            return tx.one("cron_update", _fields(new, self.at_rest))

        row = patch(self.db, f"updating cron {cron_id}", "cron_lock", {"cron_id": cron_id},
                    update, get="cron_get", access=self.at_rest.guard(access))
        return _cron(row, self.at_rest) if row else None

    def delete_cron(self, cron_id: str, *, access: Access = None) -> bool:
        return self.db.execute(f"deleting cron {cron_id}",
                               *scoped(self.db, "cron_delete", {"cron_id": cron_id}, self.at_rest.guard(access))) == 1

    def delete_crons_of_thread(self, thread_id: str) -> int:
        """Delete the crons bound to ``thread_id``; return how many."""
        return self.db.execute(f"deleting the crons of thread {thread_id}",
                               "cron_delete_of_thread", {"thread_id": thread_id})

    def _cron_search(self, assistant_id: str | None, thread_id: str | None,
                     access: Access = None) -> Search:
        return (Search(self.db).access(self.at_rest.guard(access))
                .match("resource_where_assistant_id", "assistant_id", assistant_id)
                .match("cron_where_thread_id", "thread_id", thread_id))

    def search_crons(
        self,
        *,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
        access: Access = None,
    ) -> list[Cron]:
        search = self._cron_search(assistant_id, thread_id, access).match(
            "cron_where_enabled", "enabled", None if enabled is None else bool(enabled))
        rows = search.sorted("searching crons", "cron_search", CRON_SORT, sort_by, sort_order,
                             limit, offset)
        return [_cron(r, self.at_rest) for r in rows]

    def count_crons(self, *, assistant_id: str | None = None, thread_id: str | None = None,
                    access: Access = None) -> int:
        return self._cron_search(assistant_id, thread_id, access).count("counting crons",
                                                                         "cron_count")

    def due_crons(self, now: float, limit: int = 100) -> list[Cron]:
        """Enabled crons with ``next_run_at <= now``, earliest tick first."""
        rows = self.db.all("reading due crons", "cron_due",
                           {"now": float(now), "limit": max(int(limit), 0)})
        return [_cron(r, self.at_rest) for r in rows]

    def advance_cron(self, cron_id: str, expected_next: float, new_next: float | None) -> bool:
        """Move an enabled cron's ``next_run_at`` from ``expected_next`` to ``new_next``
        (None: no more ticks, and the cron is disabled). Compare-and-set: of callers
        racing for one tick, exactly one gets True and should fire it."""
        return self.db.execute(f"advancing cron {cron_id}", "cron_advance", {
            "cron_id": cron_id, "expected": float(expected_next), "next_run_at": new_next,
            "enabled": new_next is not None}) == 1
