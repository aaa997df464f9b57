"""Group commit: one writer thread per store turns many concurrent writes into few commits.

Why: a durable step needs its task writes and its checkpoint on disk. Committing each
call separately (what LangGraph's savers do) costs one fsync per call; here every
operation queued while a commit is in flight joins the next one. Task writes may
also *linger* up to ``linger`` seconds so the checkpoint that usually follows them
within microseconds shares their commit. Nothing is acknowledged before its commit.

Each batch runs in one transaction. A fenced operation that is refused fails alone;
if the batch as a whole fails, it is rolled back and every operation is retried in
a transaction of its own, so one bad operation never fails its neighbours.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from treadle.errors import StoreError, StoreUnavailableError
from treadle.store.base import WriteOp

__all__ = ["GroupCommitter"]

log = logging.getLogger("treadle.store")

C = TypeVar("C")
_STOP = object()


class GroupCommitter(Generic[C]):
    """Run ``apply(conn, ops) -> results`` for batches of queued operations.

    ``apply`` must run the whole batch in one transaction and return, per
    operation, either its result or the exception it failed with (fencing);
    raising means the transaction failed and was rolled back.
    """

    def __init__(
        self,
        connect: Callable[[], C],
        apply: Callable[[C, list[WriteOp]], list[Any]],
        close: Callable[[C], None],
        *,
        linger: float = 0.002,
        max_batch: int = 512,
        name: str = "treadle-writer",
        is_disconnect: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        self._connect = connect
        self._apply = apply
        self._close = close
        self._linger = linger
        self._max_batch = max_batch
        self._is_disconnect = is_disconnect
        self._queue: queue.SimpleQueue[tuple[WriteOp, Future[Any]] | object] = queue.SimpleQueue()
        self._conn: C | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, op: WriteOp) -> Future[Any]:
        fut: Future[Any] = Future()
        if self._closed:
            fut.set_exception(StoreError("the store is closed"))
            return fut
        self._queue.put((op, fut))
        return fut

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)

    # --- writer thread ---------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                batch: list[tuple[WriteOp, Future[Any]]] = [item]  # type: ignore[list-item]
                stop = self._fill(batch)
                self._commit(batch)
                if stop:
                    return
        finally:
            self._drain_closed()
            if self._conn is not None:
                try:
                    self._close(self._conn)
                except Exception:  # pragma: no cover - best effort on shutdown
                    pass
                self._conn = None

    def _fill(self, batch: list[tuple[WriteOp, Future[Any]]]) -> bool:
        """Add whatever is queued; linger while only task writes are waiting."""
        deadline = None
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                scale = min(op.linger_scale for op, _ in batch)
                if self._linger <= 0 or scale <= 0:
                    return False
                if deadline is None:
                    deadline = time.monotonic() + self._linger * scale
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    return False
            if item is _STOP:
                return True
            batch.append(item)  # type: ignore[arg-type]
        return False

    def _commit(self, batch: list[tuple[WriteOp, Future[Any]]]) -> None:
        ops = [op for op, _ in batch]
        try:
            results = self._apply_with_conn(ops)
        except Exception as exc:
            if len(batch) == 1:
                _set(batch[0][1], exc=exc)
                return
            # Isolate the failure: every operation in a transaction of its own.
            for op, fut in batch:
                try:
                    (result,) = self._apply_with_conn([op])
                except Exception as one_exc:
                    _set(fut, exc=one_exc)
                else:
                    _set(fut, result=result)
            return
        for (_, fut), result in zip(batch, results, strict=True):
            _set(fut, result=result)

    def _apply_with_conn(self, ops: list[WriteOp]) -> list[Any]:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                return self._apply(self._conn, ops)
            except Exception as exc:
                if not self._is_disconnect(exc):
                    raise
                log.warning("store connection lost (%s); reconnecting", exc)
                try:
                    self._close(self._conn)
                except Exception:
                    pass
                self._conn = None
                if attempt == 2:
                    raise StoreUnavailableError(f"lost the store connection: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _drain_closed(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                _set(item[1], exc=StoreError("the store is closed"))  # type: ignore[index]


def _set(fut: Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is None and isinstance(result, BaseException):
        exc = result
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)
