"""The audit log's background writer: callers queue records and go on; a thread appends
them in batches (one transaction, one turn of the append lock, per batch) and emits each
stored record as one JSON log line on the ``treadle.audit`` logger.

Guarantees. ``close`` (the store's, so a clean shutdown of the server or a worker) writes
everything queued before it returns. While the database is unreachable, batches are
retried (backing off up to 5 s) and kept in memory; past :data:`MAX_QUEUED` records, or
when ``close`` gives up, the records not stored are logged at error level, whole, so the
log still has them. A crash (SIGKILL, power loss) loses what is queued and not yet
committed: the records of the last :data:`LINGER` (50 ms) and of the commit in flight.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict

from treadle.errors import StoreDataError, StoreError
from treadle.store.audit_log import AuditEntry, AuditRecord

__all__ = ["MAX_BATCH", "MAX_QUEUED", "AuditWriter", "emit"]

log = logging.getLogger("treadle.audit")
_own = logging.getLogger("treadle.store")

MAX_BATCH = 500  # records per transaction
# How long a batch waits for more records before its transaction. Each append is a write
# transaction of its own (SQLite: a turn of the one write lock and an fsync, beside the
# checkpoints' group commits), so records arriving together must share one: a run through
# the API writes four (thread and run created, run started and ended) within milliseconds.
LINGER = 0.05
MAX_QUEUED = 100_000  # records kept while the store is down, beyond which they are logged
_CLOSE_ATTEMPTS = 3


def emit(record: AuditRecord) -> None:
    """One log line for a stored record: message ``<action> <resource>/<id> <outcome>``,
    the record itself under ``audit`` (no headers, no bodies: the record holds neither)."""
    where = f"{record.resource or '-'}/{record.resource_id or '-'}"
    log.info("%s %s %s", record.action, where, record.outcome, extra={"audit": record.to_json()})


def _unstored(entries: Sequence[AuditEntry], why: str) -> None:
    for e in entries:
        log.error("audit record NOT stored (%s): %s %s", why, e.action, e.outcome,
                  extra={"audit": {**asdict(e), "stored": False}})


class AuditWriter:
    """Appends queued entries with ``append`` (the store's ``append_audit``) on a thread."""

    def __init__(self, append: Callable[[Sequence[AuditEntry]], list[AuditRecord]], *,
                 name: str = "treadle-audit") -> None:
        self._append = append
        self._queue: deque[AuditEntry] = deque()
        self._cond = threading.Condition()
        self._queued = 0  # entries ever queued
        self._done = 0  # entries stored or given up on
        self._flushers = 0  # callers of flush() waiting: no lingering for them
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, entry: AuditEntry) -> None:
        with self._cond:
            full = len(self._queue) >= MAX_QUEUED
            if not self._closing and not full:
                self._queue.append(entry)
                self._queued += 1
                self._cond.notify_all()
                return
        _unstored([entry], "the store's audit writer is closed" if not full
                  else f"{MAX_QUEUED} records are waiting for the store already")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every entry queued before now is stored (or given up on)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._queued
            self._flushers += 1
            self._cond.notify_all()
            try:
                while self._done < target:
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(left)
            finally:
                self._flushers -= 1
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Store what is queued, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
        if left:
            _unstored(left, "the store closed before they could be written")

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                linger_until = time.monotonic() + LINGER
                while not self._closing and not self._flushers and len(self._queue) < MAX_BATCH:
                    left = linger_until - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                batch = [self._queue[i] for i in range(min(MAX_BATCH, len(self._queue)))]
            try:
                stored = self._append(batch)
            except StoreError as exc:
                if isinstance(exc, StoreDataError):
                    self._give_up(batch, exc)
                    continue
                failures += 1
                if self._closing and failures >= _CLOSE_ATTEMPTS:
                    return  # close() logs what is left
                _own.warning("appending %d audit record(s) failed (%s); retrying",
                             len(batch), exc)
                with self._cond:
                    self._cond.wait(min(5.0, 0.05 * 2 ** min(failures, 7)))
                continue
            except Exception as exc:  # refused or a bug: never spin on it
                self._give_up(batch, exc)
                continue
            failures = 0
            for record in stored:  # before flush() can return: its caller reads the lines
                emit(record)
            with self._cond:
                for _ in batch:
                    self._queue.popleft()
                self._done += len(batch)
                self._cond.notify_all()

    def _give_up(self, batch: list[AuditEntry], exc: BaseException) -> None:
        """The store refused ``batch`` for good: log it whole rather than lose it."""
        _own.error("appending %d audit record(s) failed: %s: %s", len(batch),
                   type(exc).__name__, exc)
        with self._cond:
            for _ in batch:
                self._queue.popleft()
            self._done += len(batch)
            self._cond.notify_all()
        _unstored(batch, "the store refused them")
