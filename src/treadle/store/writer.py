"""Group commit: many concurrent writes become few commits, without extra thread hops.

Why: a durable step needs its task writes and its checkpoint on disk. Committing each
call separately (what LangGraph's savers do) costs one commit per call; here every
operation queued while a commit is in flight joins the next one. Task writes may also
*linger* (``linger`` seconds times the operation's ``linger_scale``) so the checkpoint
that usually follows them within microseconds shares their commit. Nothing is
acknowledged before its commit.

Who commits: whoever needs it first, in its own thread. A blocking caller
(:meth:`GroupCommitter.call`) whose operation cannot linger (a checkpoint) and finds
nobody committing commits everything queued itself, in its own thread: no hand-off to
another thread on the way to its commit. A caller whose operation may linger (task
writes) waits, on a lock of its own, until its linger deadline; whoever commits first
takes its operation along and wakes it only once it is committed. While a batch
commits, newcomers wait; when it is done, the committer wakes the oldest waiting
caller to commit the next batch (it had to be woken anyway). Non-blocking
submissions (:meth:`GroupCommitter.submit`, used by async callers) are committed by a
background thread. One thread at a time owns the connection.

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
import contextlib
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


class _Caller:
    """A blocking caller of :meth:`GroupCommitter.call`, parked on a lock of its own (the
    cheapest wake-up there is: only the thread concerned wakes, never a crowd).

    ``wake`` is called under the committer's lock, at most once per ``park``: when the
    operation is done, or when the caller should commit the next batch."""

    __slots__ = ("exc", "done", "result", "_lock", "_woken")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._woken = False
        self.done = False
        self.result: Any = None
        self.exc: BaseException | None = None

    def park(self, timeout: float | None) -> None:
        """Sleep until woken or ``timeout`` seconds passed (None: until woken)."""
        self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))

    def wake(self) -> None:
        if not self._woken:
            self._woken = True
            self._lock.release()

    def rearm(self) -> None:
        """Before parking again (under the committer's lock): consume a pending wake."""
        if self._woken:
            self._woken = False
            self._lock.acquire(blocking=False)


class _Item:
    __slots__ = ("deadline", "op", "target")

    def __init__(self, op: WriteOp, target: Future[Any] | _Awaiter | _Caller, deadline: float) -> None:
        self.op = op
        self.target = target
        self.deadline = deadline  # when the batch holding it must commit at the latest


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
        self._cv = threading.Condition(threading.Lock())
        self._pending: collections.deque[_Item] = collections.deque()
        self._queued_async = 0  # pending items of submit()/submit_async(): the background's
        self._committing = False  # a thread owns the connection and is committing a batch
        self._closed = False
        self._conn: C | None = None
        self._thread = threading.Thread(target=self._background, name=name, daemon=True)
        self._thread.start()

    # --- API -------------------------------------------------------------------------
    def _deadline(self, op: WriteOp) -> float:
        scale = op.linger_scale
        if self._linger <= 0 or scale <= 0:
            return 0.0  # due at once
        return time.monotonic() + self._linger * scale

    def submit(self, op: WriteOp) -> Future[Any]:
        """Queue ``op`` and return at once; the background thread commits it."""
        fut: Future[Any] = Future()
        with self._cv:
            if self._closed:
                fut.set_exception(StoreError("the store is closed"))
                return fut
            self._pending.append(_Item(op, fut, self._deadline(op)))
            self._queued_async += 1
            self._cv.notify()
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
            self._pending.append(_Item(op, waiter, self._deadline(op)))
            self._queued_async += 1
            self._cv.notify()
        return waiter.future

    def call(self, op: WriteOp) -> Any:
        """Commit ``op`` and return its result; commit the batch in this thread if it is
        due (or becomes due) while nobody else is committing."""
        me = _Caller()
        with self._cv:
            if self._closed:
                raise StoreError("the store is closed")
            self._pending.append(_Item(op, me, self._deadline(op)))
        while True:
            with self._cv:
                if me.done:
                    break
                me.rearm()
                batch = None if self._committing else self._due_batch()
                if batch is None:
                    # Someone commits (we are woken when it is done), or our batch may
                    # still wait for company (until the earliest deadline).
                    timeout = None if self._committing else self._wait_time()
                else:
                    self._committing = True
            if batch is None:
                me.park(timeout)
                continue
            self._commit_and_hand_over(batch)
        if me.exc is not None:
            raise me.exc
        return me.result

    def close(self) -> None:
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
            for item in self._pending:
                if isinstance(item.target, _Caller):
                    item.target.wake()  # no more lingering: commit now
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        with self._cv:
            # A caller may still be committing its last batch on the connection.
            self._cv.wait_for(lambda: not self._committing, timeout=30)
            leftovers, self._pending = list(self._pending), collections.deque()
        _deliver([(item.target, None, StoreError("the store is closed")) for item in leftovers], self._cv)
        if self._conn is not None:
            try:
                self._close_conn(self._conn)
            except Exception:  # pragma: no cover - best effort on shutdown
                pass
            self._conn = None

    # --- committing --------------------------------------------------------------------
    def _due_batch(self) -> list[_Item] | None:
        """The next batch if it is due now (under the lock, nobody committing), else None."""
        pending = self._pending
        if not pending:
            return None
        if not self._closed and len(pending) < self._max_batch and self._wait_time() > 0:
            return None
        n = min(len(pending), self._max_batch)
        batch = [pending.popleft() for _ in range(n)]
        self._queued_async -= sum(1 for item in batch if not isinstance(item.target, _Caller))
        return batch

    def _wait_time(self) -> float:
        """Seconds until the earliest deadline of what is queued (<= 0: due now)."""
        if not self._pending:
            return 0.0
        return min(item.deadline for item in self._pending) - time.monotonic()

    def _commit_and_hand_over(self, batch: list[_Item]) -> None:
        """Commit ``batch`` (the caller set ``_committing``), then give the connection up:
        wake the oldest queued blocking caller to commit what came meanwhile, or the
        background thread for queued submissions."""
        try:
            self._commit(batch)
        finally:
            with self._cv:
                self._committing = False
                for item in self._pending:
                    if isinstance(item.target, _Caller):
                        item.target.wake()
                        break
                if self._queued_async or self._closed:
                    self._cv.notify_all()

    def _background(self) -> None:
        """Commit submitted (non-blocking) operations, and on close what is left."""
        while True:
            with self._cv:
                while True:
                    work = self._queued_async > 0 or (self._closed and self._pending)
                    if self._closed and not self._pending:
                        return
                    if work and not self._committing:
                        batch = self._due_batch()
                        if batch is not None:
                            self._committing = True
                            break
                        self._cv.wait(self._wait_time())
                    else:
                        self._cv.wait()
            self._commit_and_hand_over(batch)
            # Parked until the next batch, this frame must not keep the last one (its
            # payloads, and through an error's traceback a whole run's state) alive.
            del batch

    def _commit(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        ops = [item.op for item in batch]
        outcomes: list[tuple[Any, Any, BaseException | None]] = []
        try:
            results = self._apply_with_conn(ops)
        except Exception as exc:
            if len(batch) == 1:
                outcomes.append((batch[0].target, None, exc))
            else:
                # Isolate the failure: every operation in a transaction of its own.
                for item in batch:
                    try:
                        (result,) = self._apply_with_conn([item.op])
                    except Exception as one_exc:
                        outcomes.append((item.target, None, one_exc))
                    else:
                        outcomes.append((item.target, result, None))
        except BaseException as exc:
            # Interrupted (KeyboardInterrupt, ...): nobody may wait forever.
            outcomes = [(item.target, None, StoreError(f"the write was interrupted: {exc!r}"))
                        for item in batch]
            _deliver(outcomes, self._cv)
            raise
        else:
            outcomes = [(item.target, result, None) for item, result in zip(batch, results, strict=True)]
        CHECKPOINT_WRITE_SECONDS.observe(time.perf_counter() - started)
        _deliver(outcomes, self._cv)

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


def _deliver(outcomes: list[tuple[Any, Any, BaseException | None]],
             lock: threading.Condition | None = None) -> None:
    """Resolve waiters: blocking callers and thread futures at once, each event loop's
    in one callback."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, BaseException | None]]] = {}
    callers: list[tuple[_Caller, Any, BaseException | None]] = []
    for target, result, exc in outcomes:
        if isinstance(target, _Caller):
            callers.append((target, result, exc))
        elif isinstance(target, _Awaiter):
            by_loop.setdefault(target.loop, []).append((target.future, result, exc))
        else:
            _set(target, result=result, exc=exc)
    if callers:
        with lock if lock is not None else contextlib.nullcontext():
            for caller, result, exc in callers:
                if exc is None and isinstance(result, BaseException):
                    exc = result
                caller.result, caller.exc, caller.done = result, exc, True
                caller.wake()
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
