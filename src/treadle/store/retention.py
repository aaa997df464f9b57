"""Thread retention: each thread's TTL, the sweep's claims, and a thread's storage figure.

A thread record may carry a TTL (minutes) and a strategy (``delete`` | ``keep_latest``):
langgraph.json's ``checkpointer.ttl`` gives threads made without one its ``default_ttl``
(:attr:`RetentionStore.default_thread_ttl`, applied by ``put_thread``), and the API sets a
thread's own on create or update. A thread expires its TTL after its ``updated_at``: create,
patch and every run's start and end restart the clock.

The sweep (``treadle.server.ttl_sweep``) claims expired threads in batches
(:meth:`~RetentionStore.claim_expired_threads`: PostgreSQL ``FOR UPDATE SKIP LOCKED``, SQLite's
single writer), so replicas sweeping at once share the work and never act twice on a thread.
A thread with a pending or running run is never claimed, and each action re-checks, in
the statement that guards it, that the thread was neither updated nor given a run since
its claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from treadle.errors import InputError
from treadle.store.connector import Connector

__all__ = ["STRATEGIES", "RetentionStore", "ThreadStorage", "ThreadTTL", "ttl_params"]

STRATEGIES = ("delete", "keep_latest")


@dataclass(frozen=True, slots=True)
class ThreadTTL:
    """A thread's TTL: ``minutes`` after its last update, ``strategy`` applies."""

    minutes: float
    strategy: str = "delete"

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown thread TTL strategy {self.strategy!r} (use delete or "
                             "keep_latest)")
        if not self.minutes > 0:
            raise InputError(f"a thread TTL must be above 0 minutes (got {self.minutes!r})")


@dataclass(frozen=True, slots=True)
class ThreadStorage:
    """The bytes of one thread's rows (their text, JSON and binary values), per part:
    ``thread`` (its API record), ``fence`` (its checkpoint-store row), ``checkpoints``,
    ``blobs``, ``writes``, ``runs``, ``tasks``, ``events``."""

    thread_id: str
    parts: dict[str, tuple[int, int]] = field(default_factory=dict)  # part -> (rows, bytes)

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.parts.values())

    @property
    def checkpoints(self) -> int:
        return self.parts.get("checkpoints", (0, 0))[0]

    @property
    def exists(self) -> bool:
        return any(rows for rows, _ in self.parts.values())

    def as_json(self) -> dict[str, object]:
        return {"thread_id": self.thread_id, "bytes": self.bytes,
                "checkpoints": self.checkpoints,
                "tables": {part: {"rows": rows, "bytes": size}
                           for part, (rows, size) in self.parts.items()}}


class RetentionStore:
    """Thread TTLs and storage figures, over ``self.db``."""

    db: Connector
    #: The TTL of threads made without one (langgraph.json ``checkpointer.ttl.default_ttl``);
    #: set by the API that loaded it.
    default_thread_ttl: ThreadTTL | None = None

    def set_thread_ttl(self, thread_id: str, ttl: ThreadTTL | None) -> bool:
        """Give the thread ``ttl`` (None: it never expires); False for an unknown thread."""
        return self.db.execute(f"setting the TTL of thread {thread_id}", "thread_ttl_set",
                               ttl_params(thread_id, ttl)) == 1

    def thread_ttl(self, thread_id: str) -> tuple[ThreadTTL, float] | None:
        """The thread's TTL and when it expires (Unix seconds), or None (no TTL, or no such
        thread)."""
        row = self.db.one(f"reading the TTL of thread {thread_id}", "thread_ttl_get",
                          {"thread_id": thread_id})
        if row is None or row[0] is None:
            return None
        return ThreadTTL(float(row[0]), row[1] or "delete"), float(row[2])

    def claim_expired_threads(self, limit: int) -> list[tuple[str, str]]:
        """Claim up to ``limit`` expired threads without a pending or running run, not
        claimed since their last update; [(thread_id, strategy)]."""
        rows = self.db.transact("claiming expired threads", lambda tx: tx.all(
            "threads_ttl_claim", {"limit": int(limit)}))
        return [(str(r[0]), str(r[1])) for r in rows]

    def release_abandoned_claims(self, retry: float) -> int:
        """Make ``delete`` claims older than ``retry`` seconds whose thread is still there
        (their sweeper died) claimable again; how many."""
        return self.db.execute("releasing abandoned thread TTL claims", "threads_ttl_release",
                               {"retry": float(retry)})

    def expired_thread_unchanged(self, thread_id: str) -> bool:
        """Is the claimed thread still neither updated nor given a run since its claim?"""
        return self.db.one(f"checking expired thread {thread_id}", "thread_ttl_still_due",
                           {"thread_id": thread_id}) is not None

    def delete_expired_thread_record(self, thread_id: str) -> bool:
        """Delete the claimed thread's record if it is still unchanged (as
        :meth:`expired_thread_unchanged`), in one statement; True when it went."""
        return bool(self.db.write(f"deleting expired thread {thread_id}",
                                  "thread_ttl_delete_record", {"thread_id": thread_id}))

    def thread_storage(self, thread_id: str) -> ThreadStorage:
        """The bytes and rows the thread holds in each table (named query
        ``thread_storage``); every part is 0 for an unknown thread."""
        rows = self.db.all(f"measuring thread {thread_id}", "thread_storage",
                           {"thread_id": thread_id})
        return ThreadStorage(thread_id, {str(r[0]): (int(r[1]), int(r[2])) for r in rows})


def ttl_params(thread_id: str, ttl: ThreadTTL | None) -> dict[str, object]:
    """The parameters of ``thread_ttl_set`` (also for a caller in its own transaction)."""
    return {"thread_id": thread_id, "minutes": None if ttl is None else float(ttl.minutes),
            "strategy": None if ttl is None else ttl.strategy}
