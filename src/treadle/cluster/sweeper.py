"""A worker's session lock, and its sweep of the runs and tasks of lost workers.

Failover without waiting for the lease: the worker holds a session lock
(:class:`~treadle.store.queue.WorkerSession`: a PostgreSQL session-level advisory lock, or a
file lock beside an SQLite store; keyed from its ``worker_id``) for its whole life
and claims under that key; when it dies its session ends, and the next sweep of any
worker re-queues its runs. The sweep loop also checks the worker's own session every
``sweep_interval``: while it is lost (database restart, partition) the worker claims
nothing, and once it is back the worker judges other workers' sessions only after
``SESSION_GRACE`` seconds (as the sweep does after the database's own start), so the
workers coming back after a database restart or failover get time to take their locks
again before anyone counts them dead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from treadle.config import Settings
from treadle.errors import StoreError
from treadle.store import Store
from treadle.store.queue import SESSION_GRACE, WorkerSession

__all__ = ["Sweeper", "session_key"]

log = logging.getLogger("treadle.worker")


def session_key(worker_id: str) -> int:
    """The key of a worker's session lock (a signed 64-bit int) from its id."""
    return int.from_bytes(bytes.fromhex(worker_id[:16]), "big", signed=True)


class Sweeper:
    """A worker's session (:attr:`held`: may it claim?) and its sweep loop."""

    def __init__(self, store: Store, settings: Settings, ttl: float) -> None:
        self.store = store
        self.settings = settings
        self.ttl = ttl
        self.session: WorkerSession | None = None  # set by open() (None: the backend has none)
        self.held = True

    def open(self, worker_id: str) -> None:
        self.session = self.store.worker_session(session_key(worker_id))

    @property
    def key(self) -> int | None:
        """The session key claims are made under (None: the backend has no sessions)."""
        return self.session.key if self.session is not None else None

    async def check(self) -> bool:
        """Is this worker's session (its lock) held? Reconnects it when it was lost.
        True when its sweeps may judge other sessions: held, and for SESSION_GRACE
        seconds when it was taken again after a loss."""
        session = self.session
        if session is None:
            return False
        try:
            held = await asyncio.to_thread(session.held)
        except StoreError as exc:
            log.warning("checking the worker session failed (%s)", exc)
            held = False
        if held != self.held:
            log.log(logging.INFO if held else logging.WARNING,
                    "worker session %s", "held: claiming again" if held
                    else "lost: claiming nothing until it is back")
        self.held = held
        since = session.held_since
        return held and since is not None and (
            not session.reconnected or time.monotonic() - since >= SESSION_GRACE)

    async def sweeps(self) -> None:
        """Every ``sweep_interval`` (jittered): check the session, re-queue what lost
        workers held."""
        interval = min(self.settings.sweep_interval, self.ttl / 4)
        while True:
            await asyncio.sleep(interval * (0.75 + random.random() / 2))
            check_sessions = await self.check()
            try:
                changed = await asyncio.to_thread(
                    self.store.sweep, self.settings.max_worker_losses,
                    check_sessions=check_sessions)
            except StoreError as exc:
                log.warning("sweeping lost leases failed (%s)", exc)
                continue
            for ident, status in changed:
                log.warning("worker lost (session ended or lease expired): %s -> %s",
                            ident, status)

    async def close(self) -> None:
        if self.session is not None:
            await asyncio.to_thread(self.session.close)
