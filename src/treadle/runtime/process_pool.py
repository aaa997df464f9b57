"""A process pool where one dead worker fails one task, not the whole pool.

treadle runs CPU-heavy node bodies in worker processes. The obvious tool,
``concurrent.futures.ProcessPoolExecutor``, treats the death of any worker
(``os._exit``, SIGKILL from the OOM killer, a segfault in a C extension) as
fatal for the pool: it raises ``BrokenProcessPool`` into *every* pending
future and refuses new work. For a runtime that retries individual node
attempts that is the wrong blast radius, and it gives no way to kill a single
attempt that runs past its timeout.

``ProcessPool`` keeps one ``multiprocessing`` process per slot, each joined
to the parent by a ``Pipe``. One dispatcher thread hands tasks to idle
workers and waits (``multiprocessing.connection.wait``, no busy-waiting) on
the pipes, the process sentinels and the nearest deadline. When a worker dies
only the attempt it was running fails, with ``TaskCrashedError``; an attempt
past its timeout has its process killed and fails with ``NodeTimeoutError``.
Either way the process is replaced and the pool keeps working.

Functions and arguments travel with ``cloudpickle`` (lambdas, closures and
functions from a script's ``__main__`` work); results and exceptions come back
the same way. Workers exit when the parent dies, even mid-task: a watchdog thread
in each worker waits for EOF on a pipe whose write end only the parent holds.
With the default "forkserver" context the fork server preloads this module (and
so ``treadle``), which makes starting or replacing a worker a cheap fork.

A task submitted with ``fresh=True`` gets a process of its own, started for it and
discarded after it: what the task changes in its process (resource limits,
namespaces: see ``treadle.runtime.sandbox``) cannot leak into later tasks. That
process runs no watchdog thread (so it is single-threaded, as ``unshare`` of a user
namespace requires); the kernel kills it when its parent dies instead.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import ctypes
import multiprocessing
import os
import pickle
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any, cast

import cloudpickle

from treadle.errors import ConfigError, NodeTimeoutError, TaskCrashedError, UsageError

__all__ = ["ProcessPool"]

_SHUT_DOWN = "process pool shut down"
_POOLS: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


# --------------------------------------------------------------------- worker side


def _watch_parent(alive: Any, ppid: int) -> None:
    # EOF on ``alive`` means the pool's parent is gone (with "forkserver", getppid() is
    # the fork server, which lives on). With "fork" siblings inherit the write end too,
    # but then the worker's own parent is the pool's parent, so re-parenting tells.
    while not alive.poll(0.5) and os.getppid() == ppid:
        pass
    os._exit(1)


def _execute(data: bytes) -> bytes:
    try:
        fn, args, kwargs = pickle.loads(data)
        return pickle.dumps((True, cloudpickle.dumps(fn(*args, **kwargs)), "", ""))
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the caller
        try:
            blob = cloudpickle.dumps(exc)
        except Exception:  # noqa: BLE001
            blob = b""
        return pickle.dumps((False, blob, repr(exc), traceback.format_exc()))


_PR_SET_PDEATHSIG = 1


def _die_with_parent(alive: Any) -> None:
    """For a fresh worker: the kernel sends SIGKILL when its parent (the pool's process,
    or with "forkserver" the fork server) dies."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # The fork server exits once the pool's process and every worker have closed its
    # "alive" pipe; each worker inherits that pipe's write end. A fresh worker closes
    # its copy, so the fork server goes when the pool's process and its regular workers
    # (their watchdogs) do, and this worker with it.
    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        try:
            os.close(fd)
        except OSError:
            pass
        server._forkserver_alive_fd = None  # type: ignore[union-attr]
    if alive.poll(0):  # the pool's process died before the signal was armed
        os._exit(1)


def _worker_main(conn: Any, alive_r: Any, alive_w: Any, fresh: bool = False) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    alive_w.close()
    if fresh:
        _die_with_parent(alive_r)
    else:
        threading.Thread(target=_watch_parent, args=(alive_r, os.getppid()),
                         daemon=True).start()
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent died
        if not data:
            return  # the pool is shutting down
        try:
            conn.send_bytes(_execute(data))
        except OSError:
            return
        if fresh:
            return  # one task only


# --------------------------------------------------------------------- parent side


@dataclass(slots=True)
class _Task:
    future: Future[Any]
    payload: bytes
    timeout: float | None
    fresh: bool = False


@dataclass(slots=True)
class _Slot:
    process: BaseProcess
    conn: Any
    task: _Task | None = None
    deadline: float | None = None
    fresh: bool = False


def _fail(future: Future[Any], exc: BaseException) -> None:
    if future.set_running_or_notify_cancel():
        future.set_exception(exc)


def _deliver(future: Future[Any], raw: bytes) -> None:
    ok, blob, text, tb = pickle.loads(raw)
    if ok:
        try:
            future.set_result(pickle.loads(blob))
        except Exception as exc:  # noqa: BLE001
            future.set_exception(RuntimeError(f"the result could not be unpickled: {exc!r}"))
        return
    try:
        error = pickle.loads(blob) if blob else None
    except Exception:  # noqa: BLE001 - e.g. a custom __init__ that unpickling cannot call
        error = None
    if not isinstance(error, BaseException):
        error = RuntimeError(f"{text} (exception could not be pickled)\n\nRemote traceback:\n{tb}")
    try:
        cast(Any, error).__treadle_remote_traceback__ = tb
    except Exception:  # noqa: BLE001
        pass
    future.set_exception(error)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ProcessPool:
    """Up to ``size`` warm worker processes; a crash or timeout fails one task only.

    Processes start lazily on first use. ``timeout`` (seconds) counts from the
    moment a worker starts the task, not from ``submit``; it is reserved, so a
    function's own ``timeout`` keyword cannot be passed through (nor can ``fresh``:
    run the task in a process of its own, discarded after it).
    """

    def __init__(self, size: int, *, mp_context: str = "forkserver") -> None:
        if size < 1:
            raise ConfigError(f"process pool size must be at least 1, got {size}")
        self.size = size
        self._ctx = multiprocessing.get_context(mp_context)
        if mp_context == "forkserver":
            # Import treadle (and LangGraph) once in the fork server, not per worker. Not
            # "__main__": preloading it would re-run a script's top-level code there.
            self._ctx.set_forkserver_preload([__name__])
        self._lock = threading.Lock()
        self._queue: collections.deque[_Task] = collections.deque()
        self._closing = False
        self._kill = False
        self._thread: threading.Thread | None = None
        self._slots: list[_Slot] = []  # owned by the dispatcher thread
        self._warm = 0  # how many processes to keep: the most that were ever needed
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._alive_r, self._alive_w = self._ctx.Pipe(duplex=False)

    # public API ------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, timeout: float | None = None,
               fresh: bool = False, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)`` for a worker; never blocks."""
        payload = cloudpickle.dumps((fn, args, kwargs))
        future: Future[Any] = Future()
        with self._lock:
            if self._closing:
                raise UsageError(_SHUT_DOWN)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="treadle-process-pool", daemon=True)
                self._thread.start()
                _POOLS.add(self)
            self._queue.append(_Task(future, payload, timeout, fresh))
        self._wake()
        return future

    async def arun(self, fn: Callable[..., Any], /, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Any:
        return await asyncio.wrap_future(self.submit(fn, *args, timeout=timeout, **kwargs))

    def run(self, fn: Callable[..., Any], /, *args: Any, timeout: float | None = None,
            **kwargs: Any) -> Any:
        return self.submit(fn, *args, timeout=timeout, **kwargs).result()

    def shutdown(self, wait: bool = True, *, kill: bool = False) -> None:
        """Stop the pool. Queued tasks fail with ``RuntimeError("process pool shut down")``.

        Running tasks are allowed to finish, unless ``kill`` is true: then their
        processes are killed and their futures fail the same way.
        """
        with self._lock:
            self._closing = True
            self._kill = self._kill or kill
            queued = list(self._queue)
            self._queue.clear()
            thread = self._thread
        for task in queued:
            _fail(task.future, RuntimeError(_SHUT_DOWN))
        if thread is None:
            self._close_pipes()
            return
        self._wake()
        if wait and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> ProcessPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown(wait=True)

    # dispatcher ------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # buffer full (a wake-up is pending anyway) or already closed
            pass

    def _start_slot(self, fresh: bool = False) -> _Slot:
        parent_conn, child_conn = self._ctx.Pipe()
        # typeshed types get_context(str) as BaseContext, which lacks Process; every
        # concrete context (fork, spawn, forkserver) has it.
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main, name="treadle-process-worker",
            args=(child_conn, self._alive_r, self._alive_w, fresh))
        try:
            process.start()
        finally:
            child_conn.close()
        slot = _Slot(process, parent_conn, fresh=fresh)
        self._slots.append(slot)
        return slot

    def _retire(self, slot: _Slot, *, kill: bool) -> int | None:
        """Remove a slot; reap its process (killing it first if asked)."""
        self._slots.remove(slot)
        slot.conn.close()
        if kill and slot.process.exitcode is None:
            slot.process.kill()
        slot.process.join(timeout=None if kill else 2)
        if slot.process.exitcode is None:
            slot.process.kill()
            slot.process.join()
        code = slot.process.exitcode
        slot.process.close()
        return code

    def _dispatch(self, task: _Task) -> None:
        error: BaseException | None = None
        for _ in range(2):  # a second try if the idle worker turns out to be dead
            slot = None
            try:
                if task.fresh:
                    slot = self._start_slot(fresh=True)
                else:
                    slot = next((s for s in self._slots if s.task is None and not s.fresh), None)
                if slot is None:
                    slot = self._start_slot()
                    self._warm = max(self._warm, sum(not s.fresh for s in self._slots))
                slot.conn.send_bytes(task.payload)
            except Exception as exc:  # noqa: BLE001 - broken pipe, or fork failed
                if slot is not None:
                    self._retire(slot, kill=True)
                error = TaskCrashedError(f"could not hand the task to a worker process: {exc!r}")
                continue
            slot.task = task
            slot.deadline = None if task.timeout is None else time.monotonic() + task.timeout
            return
        task.future.set_exception(error)

    def _run(self) -> None:
        try:
            while self._step():
                pass
        finally:
            self._teardown()

    def _step(self) -> bool:
        task: _Task | None
        with self._lock:
            busy = sum(s.task is not None for s in self._slots)
            if self._kill or (self._closing and not busy):
                return False
            ready_tasks: list[_Task] = []
            while self._queue and busy + len(ready_tasks) < self.size:
                task = self._queue.popleft()
                if task.future.set_running_or_notify_cancel():
                    ready_tasks.append(task)
        for task in ready_tasks:
            self._dispatch(task)
        deadlines = [s.deadline for s in self._slots if s.deadline is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        objects = [self._wake_r, *(s.conn for s in self._slots),
                   *(s.process.sentinel for s in self._slots)]
        ready = set(wait(objects, timeout))
        if self._wake_r in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass
        now = time.monotonic()
        for slot in list(self._slots):
            task = slot.task
            if slot.conn in ready or slot.process.sentinel in ready:
                raw = None
                if slot.conn.poll():
                    try:
                        raw = slot.conn.recv_bytes()
                    except (EOFError, OSError):
                        pass  # the worker died (mid-send or idle)
                if raw is not None and task is not None:
                    slot.task = slot.deadline = None
                    _deliver(task.future, raw)
                    task = None
                if raw is None or slot.process.sentinel in ready or slot.fresh:
                    code = self._retire(slot, kill=True)
                    if task is not None:
                        crashed = TaskCrashedError(
                            f"the worker process running this node attempt died "
                            f"({_describe_exit(code)})")
                        crashed.exitcode = code
                        task.future.set_exception(crashed)
            elif task is not None and slot.deadline is not None and now >= slot.deadline:
                self._retire(slot, kill=True)
                task.future.set_exception(NodeTimeoutError(
                    f"node attempt exceeded its timeout of {task.timeout:g}s; "
                    f"the process was killed"))
        try:  # replace dead processes now, so the next task finds a warm one
            while sum(not s.fresh for s in self._slots) < self._warm and not self._closing:
                self._start_slot()
        except Exception:  # noqa: BLE001 - _dispatch will try again (and report) on demand
            pass
        return True

    def _teardown(self) -> None:
        task: _Task | None
        with self._lock:
            self._closing = True
            queued = list(self._queue)
            self._queue.clear()
        for task in queued:
            _fail(task.future, RuntimeError(_SHUT_DOWN))
        for slot in self._slots:
            if slot.task is None:
                try:
                    slot.conn.send_bytes(b"")  # stop; idle workers exit all at once
                except OSError:
                    pass
        for slot in list(self._slots):
            task = slot.task
            self._retire(slot, kill=task is not None)
            if task is not None:
                task.future.set_exception(RuntimeError(_SHUT_DOWN))
        self._close_pipes()

    def _close_pipes(self) -> None:
        for end in (self._wake_r, self._wake_w, self._alive_r, self._alive_w):
            end.close()


@atexit.register
def _shutdown_all() -> None:
    """Kill every pool's workers at interpreter exit: no hang, no orphans."""
    for pool in list(_POOLS):
        pool.shutdown(wait=True, kill=True)
