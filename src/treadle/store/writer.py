"""Group commit: many concurrent writes become few commits, without extra thread hops.

Why: a durable step needs its task writes and its checkpoint on disk. Committing each
call separately (what LangGraph's savers do) costs one commit per call; here every
operation queued while a commit is in flight joins the next one. Task writes may also
*linger* (``linger`` seconds times the operation's ``linger_scale``) so the checkpoint
that usually follows them within microseconds shares their commit. Nothing is
acknowledged before its commit.

Leader/follower: a blocking caller (:meth:`GroupCommitter.call`) that finds nobody
committing becomes the *leader* and commits the batch itself, in its own thread;
callers arriving meanwhile are *followers* whose operations join the leader's next
batch. A leader hands over as soon as its own operation is committed. Non-blocking
submissions (:meth:`GroupCommitter.submit`, used by async callers) are led by a
background thread. Either way one thread at a time owns the connection.

Each batch runs in one transaction. A fenced operation that is refused fails alone;
if the batch as a whole fails, it is rolled back and every operation is retried in a
transaction of its own, so one bad operation never fails its neighbours.

A connection that ``retire`` names after a batch (one that just carried a payload so big
that its buffers, which never shrink, would hold that memory for the process's lifetime)
is closed, success or failure, and the next batch opens a fresh one.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from treadle.errors import StoreError, StoreUnavailableError
from treadle.metrics import CHECKPOINT_WRITE_SECONDS
from treadle.store.checkpoints import WriteOp

__all__ = ["GroupCommitter"]

log = logging.getLogger("treadle.store")

C = TypeVar("C")


class _Awaiter:
    """An async submitter waiting on its event loop (see ``submit_async``)."""

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()


_Item = tuple[WriteOp, "Future[Any] | _Awaiter"]


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
        retire: Callable[[C], bool] = lambda conn: False,
    ) -> None:
        self._connect = connect
        self._apply = apply
        self._close_conn = close
        self._linger = linger
        self._max_batch = max_batch
        self._is_disconnect = is_disconnect
        self._retire = retire
        self._cv = threading.Condition()
        self._pending: collections.deque[_Item] = collections.deque()
        self._leading = False
        self._closed = False
        self._conn: C | None = None
        self._thread = threading.Thread(target=self._background, name=name, daemon=True)
        self._thread.start()

    # --- API -------------------------------------------------------------------------
    def submit(self, op: WriteOp) -> Future[Any]:
        """Queue ``op`` and return at once; the background leader commits it."""
        fut: Future[Any] = Future()
        with self._cv:
            if self._closed:
                fut.set_exception(StoreError("the store is closed"))
                return fut
            self._pending.append((op, fut))
            self._cv.notify_all()
        return fut

    def submit_async(self, op: WriteOp) -> asyncio.Future[Any]:
        """Queue ``op`` from a coroutine; await the returned future for its result.

        Results reach each event loop in one callback per batch: resolving a
        thousand task writes one ``call_soon_threadsafe`` at a time would make the
        committer fight the busy loop for the GIL a thousand times.
        """
        waiter = _Awaiter(asyncio.get_running_loop())
        with self._cv:
            if self._closed:
                waiter.future.set_exception(StoreError("the store is closed"))
                return waiter.future
            self._pending.append((op, waiter))
            self._cv.notify_all()
        return waiter.future

    def call(self, op: WriteOp) -> Any:
        """Commit ``op`` and return its result; lead the commit if nobody is."""
        fut: Future[Any] = Future()
        with self._cv:
            if self._closed:
                raise StoreError("the store is closed")
            self._pending.append((op, fut))
            self._cv.notify_all()
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead(until=fut)
        return fut.result()

    def close(self) -> None:
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        with self._cv:
            leftovers, self._pending = list(self._pending), collections.deque()
        _deliver([(target, None, StoreError("the store is closed")) for _, target in leftovers])
        if self._conn is not None:
            try:
                self._close_conn(self._conn)
            except Exception:  # pragma: no cover - best effort on shutdown
                pass
            self._conn = None

    # --- leading -----------------------------------------------------------------------
    def _background(self) -> None:
        while True:
            with self._cv:
                while not self._closed and (not self._pending or self._leading):
                    self._cv.wait()
                if self._closed:
                    # Finish what was queued before close; later submits are refused.
                    if not self._pending or self._leading:
                        return
                self._leading = True
            self._lead(until=None)

    def _lead(self, until: Future[Any] | _Awaiter | None) -> None:
        """Commit batches until ``until`` is done (or, for the background leader, until
        nothing is pending), then hand leadership back."""
        try:
            while True:
                batch = self._take_batch()
                if batch:
                    self._commit(batch)
                if until is not None and isinstance(until, Future) and until.done():
                    return
                if not batch:
                    return
        finally:
            with self._cv:
                self._leading = False
                self._cv.notify_all()  # the background thread takes over what is left

    def _take_batch(self) -> list[_Item]:
        with self._cv:
            deadline = None
            while self._pending and len(self._pending) < self._max_batch and not self._closed:
                scale = min(op.linger_scale for op, _ in self._pending)
                if self._linger <= 0 or scale <= 0:
                    break
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self._linger * scale
                if now >= deadline:
                    break
                self._cv.wait(deadline - now)
            n = min(len(self._pending), self._max_batch)
            return [self._pending.popleft() for _ in range(n)]

    def _commit(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        ops = [op for op, _ in batch]
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        try:
            results = self._apply_with_conn(ops)
        except Exception as exc:
            if len(batch) == 1:
                outcomes.append((batch[0][1], None, exc))
            else:
                # Isolate the failure: every operation in a transaction of its own.
                for op, target in batch:
                    try:
                        (result,) = self._apply_with_conn([op])
                    except Exception as one_exc:
                        outcomes.append((target, None, one_exc))
                    else:
                        outcomes.append((target, result, None))
        else:
            outcomes = [(target, result, None) for (_, target), result in zip(batch, results, strict=True)]
        CHECKPOINT_WRITE_SECONDS.observe(time.perf_counter() - started)
        _deliver(outcomes)

    def _apply_with_conn(self, ops: list[WriteOp]) -> list[Any]:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            try:
                return self._apply(conn, ops)
            except Exception as exc:
                if not self._is_disconnect(exc):
                    raise
                log.warning("store connection lost (%s); reconnecting", exc)
                try:
                    self._close_conn(self._conn)
                except Exception:
                    pass
                self._conn = None
                if attempt == 2:
                    raise StoreUnavailableError(f"lost the store connection: {exc}") from exc
            finally:
                if self._conn is conn and self._retire(conn):
                    self._conn = None
                    try:
                        self._close_conn(conn)
                    except Exception:  # noqa: BLE001 - a fresh one is opened either way
                        pass
        raise AssertionError("unreachable")  # pragma: no cover


def _set(fut: Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if fut.done():
        return
    if exc is None and isinstance(result, BaseException):
        exc = result
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


def _deliver(outcomes: list[tuple[Any, Any, BaseException | None]]) -> None:
    """Resolve waiters: thread futures at once, each event loop's in one callback."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
    for target, result, exc in outcomes:
        if isinstance(target, _Awaiter):
            by_loop.setdefault(target.loop, []).append((target.future, result, exc))
        else:
            _set(target, result=result, exc=exc)
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_async, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _resolve_async(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, exc in items:
        if fut.done():
            continue
        if exc is None and isinstance(result, BaseException):
            exc = result
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
