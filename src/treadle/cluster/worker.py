"""``treadle worker``: claims queued runs and remote node tasks and executes them.

One asyncio process carrying up to ``concurrency`` runs (1,000 by default: async runs are
cheap; it stops claiming while its memory or loop lag is above its bounds,
:mod:`treadle.cluster.backpressure`) and ``task_slots`` node tasks. Loops: claim runs,
claim tasks, heartbeat (extends leases, learns about cancel requests and lost leases),
sweep (re-queues the runs and tasks of dead workers), advertise (its row in
``treadle_workers``: the graphs it serves, so a caller waiting on a graph nobody serves is
told). Store errors make a loop back off and log; they never kill the worker.

Failover without waiting for the lease: the worker holds a session lock for its whole
life and claims under it; when it dies, the next sweep of any worker re-queues its runs
(:mod:`treadle.cluster.sweeper`).

Shutdown: the first SIGTERM/SIGINT drains (stop claiming, let node bodies in flight
finish for up to ``drain_timeout``, wait for their writes to commit, hand each run
back to the queue so another worker resumes it at once); a second one stops at once
(leases then expire and the sweeper re-queues the runs).

Abandoned node threads (sync bodies still running after their run was cancelled or timed
out, see :mod:`treadle.runtime.node_threads`) cannot be interrupted: once there are
``max_abandoned_threads`` of them the worker recycles itself (drains as on SIGTERM, then
exits with :data:`EXIT_RECYCLE` so its supervisor starts a fresh process). Its own store
calls (claims, heartbeats, advertisements) run on a small executor of its own, which no
node body can fill.

A run attempt itself (prepare, drive, record its end) is in :mod:`treadle.cluster.attempt`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from treadle import listen, logs, metrics
from treadle.cluster.attempt import AttemptDeps, RunAttempt, RunHooks
from treadle.cluster.backpressure import PAUSE, Backpressure
from treadle.cluster.notify import close_notifier, notifier_for
from treadle.cluster.remote import run_task
from treadle.cluster.sweeper import Sweeper
from treadle.config import Settings
from treadle.errors import StoreError, StoreUnavailableError
from treadle.graphs.registry import REF_PREFIX, GraphRegistry
from treadle.runtime.node_threads import abandoned_threads
from treadle.store import shared
from treadle.store.queue import (
    CHANNEL_CANCEL,
    CHANNEL_CHANGED,
    CHANNEL_RUNS,
    CHANNEL_TASK_DONE,
    CHANNEL_TASKS,
    RunRow,
    TaskRow,
    WorkerInfo,
)

__all__ = ["EXIT_RECYCLE", "Worker", "new_worker_id", "worker_name"]

log = logging.getLogger("treadle.worker")

#: Exit code of a worker that recycled itself (too many abandoned node threads): restart it.
EXIT_RECYCLE = 75

def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def new_worker_id() -> str:
    """A worker's unique id (one per Worker, so per process in ``treadle worker``): the key
    of its ``treadle_workers`` row. Made here only."""
    return uuid.uuid4().hex


class Worker:
    """Claims runs and node tasks from the store and executes them (see the module).

    ``hooks``: what happens as a run ends beyond its status (the HTTP API's thread
    records, webhooks and on-completion: ``treadle.server.run_hooks``)."""

    def __init__(self, settings: Settings, refs: dict[str, str], *, name: str | None = None,
                 concurrency: int | None = None, task_slots: int | None = None,
                 registry: GraphRegistry | None = None, port: int | None = None,
                 memory_ttl: dict[str, Any] | None = None, hooks: RunHooks | None = None) -> None:
        self.settings = settings
        self.hooks = hooks or RunHooks()
        self.memory_ttl = memory_ttl  # langgraph.json's store.ttl (unless registry is given)
        self.port = port  # of its HTTP endpoint (probes, metrics); None: none
        # Bound now, before the store and the graphs: a port in use stops it at once.
        self._listener = None if port is None else listen.bind(
            settings.host, port, option="--port / TREADLE_WORKER_PORT")
        # An embedding process (treadle dev) may share its loaded graphs; it closes them.
        self._shared_registry = registry
        self.name = name or worker_name()
        self.worker_id = new_worker_id()
        self.concurrency = concurrency or settings.worker_concurrency
        self.backpressure = Backpressure(settings)
        self.task_slots = settings.worker_task_slots if task_slots is None else task_slots
        self.ttl = settings.lease_ttl
        self.refs = refs
        self.runs: dict[str, RunAttempt] = {}
        self.tasks: dict[str, tuple[TaskRow, asyncio.Task[Any]]] = {}
        self.stopping = False
        self._stop = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stop_requests = 0
        self._last_heartbeat = time.monotonic()
        # claim runs, claim tasks, heartbeat, sweep, advertise
        self.loops: list[asyncio.Task[None]] = []
        self.ticked_at = time.monotonic()  # the heartbeat loop's last round (liveness)
        self.exit_code = 0  # EXIT_RECYCLE once it recycled itself
        self._recycles = False  # in its own process (run(handle_signals=True))
        self._own = ThreadPoolExecutor(4, thread_name_prefix="treadle-worker-own")

    # --- lifecycle -----------------------------------------------------------------------
    def connect(self) -> bool:
        """Open the store, retrying with backoff while it is unreachable (a worker may
        start before its database). False when SIGTERM/SIGINT came first."""
        stop = threading.Event()
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
            except ValueError:  # not the main thread
                pass
        try:
            failures = 0
            while True:
                try:
                    self.store = shared.acquire(self.settings.store, self.settings)
                    break
                except StoreUnavailableError as exc:
                    failures += 1
                    delay = _backoff_delay(failures)
                    log.warning("store unreachable (%s); retrying in %.1fs", exc, delay)
                    if stop.wait(delay):
                        return False
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.sweeper = Sweeper(self.store, self.settings, self.ttl)  # its session and sweeps
        self.notifier = notifier_for(self.store)
        pushes = self.notifier.pushes
        self.poll = self.settings.poll_interval if pushes else min(self.settings.poll_interval, 0.05)
        self.registry = self._shared_registry or GraphRegistry(
            self.store, self.refs, allow_pickled=self.settings.allow_pickled_graphs,
            settings=self.settings, memory_ttl=self.memory_ttl)
        return True

    def load(self) -> list[str]:
        """Load the graphs; return their ids (failures are logged, see registry.failed)."""
        if self._shared_registry is None:
            self.registry.load_all()
        return self.registry.graph_ids

    async def run(self, *, handle_signals: bool = True) -> None:
        log_context = logs.bind(worker=self.name)  # every line of its loops, runs and tasks
        loop = asyncio.get_running_loop()
        self._recycles = handle_signals
        if handle_signals:  # its own process: the store calls of its runs (not node bodies)
            loop.set_default_executor(ThreadPoolExecutor(self.settings.store_threads,
                                                         thread_name_prefix="treadle-worker"))
        endpoint = None
        if self._listener is not None:  # listening before "serving": probes answer from then on
            from treadle.cluster.endpoint import WorkerEndpoint

            endpoint = WorkerEndpoint(self, self._listener)
            self._listener = None  # the endpoint's now (its server closes it)
            await endpoint.start()
        # SQLite: a commit by another connection (a run queued by another process) wakes the
        # claims too, so an idle worker polls only every poll_interval, not every 50 ms.
        changes = (CHANNEL_CHANGED,) if self.notifier.detects_changes else ()
        self._idle = self.settings.poll_interval if self.notifier.pushes or changes else self.poll
        self._run_wake, run_sub = self.notifier.async_event((CHANNEL_RUNS, *changes))
        self._task_wake, task_sub = self.notifier.async_event((CHANNEL_TASKS, *changes))

        def on_cancel(_channel: str, run_id: str) -> None:
            loop.call_soon_threadsafe(self._on_cancel, run_id)

        cancel_sub = self.notifier.subscribe(CHANNEL_CANCEL, on_cancel)
        for sig in (signal.SIGTERM, signal.SIGINT) if handle_signals else ():
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        self.backpressure.start()
        sweeper = self.sweeper
        sweeper.open(self.worker_id)
        await sweeper.check()
        log.info("worker %s serving %s (runs %d, task slots %d, lease %gs)", self.name,
                 ", ".join(self.registry.graph_ids) or "no graph by reference",
                 self.concurrency, self.task_slots, self.ttl)
        await self._advertise()  # before its first claim: callers see it at once
        loops = self.loops = [asyncio.create_task(c, name=n) for n, c in (
            ("claim-runs", self._claim_runs()), ("claim-tasks", self._claim_tasks()),
            ("heartbeat", self._heartbeats()), ("sweep", sweeper.sweeps()),
            ("advertise", self._advertisements()))]
        try:
            with metrics.track_worker(self):
                await self._stop.wait()
                await self._drain()
        finally:
            self.backpressure.stop()
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            for sub in (run_sub, task_sub, cancel_sub):
                sub.close()
            for sig in (signal.SIGTERM, signal.SIGINT) if handle_signals else ():
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass
            try:
                await asyncio.to_thread(self.store.remove_worker, self.worker_id)
            except StoreError as exc:  # it expires on its own
                log.warning("could not unregister worker %s (%s)", self.name, exc)
            await sweeper.close()  # its runs are ended or handed back by now
            self._own.shutdown(wait=False)
            log.info("worker %s stopped", self.name)
            if endpoint is not None:  # /readyz said 503 until now
                await endpoint.stop()
            logs.reset(log_context)

    def request_stop(self) -> None:
        self._stop_requests += 1
        if self._stop_requests == 1:
            log.info("worker %s draining: no new claims; in-flight node tasks get %gs",
                     self.name, self.settings.drain_timeout)
            self.stopping = True
            self._stop.set()
        else:
            log.warning("worker %s stopping now: leases will expire and be re-queued", self.name)
            for ex in list(self.runs.values()):
                ex.stop("shutdown")
            for _row, task in list(self.tasks.values()):
                task.cancel()

    def close(self) -> None:
        if self._listener is not None:  # bound, never served
            self._listener.close()
            self._listener = None
        if not hasattr(self, "store"):
            return
        if self._shared_registry is None:
            self.registry.close()
        close_notifier(self.store)
        shared.release(self.settings.store)

    async def _drain(self) -> None:
        self.stopping = True
        deadline = self.settings.drain_timeout
        for ex in self.runs.values():
            ex.close_gate()
        waits = [ex.wait_idle(deadline) for ex in self.runs.values()]
        waits += [asyncio.wait_for(asyncio.shield(t), deadline) for _r, t in self.tasks.values()]
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        await asyncio.sleep(0.02)  # let LangGraph submit the writes of the bodies that ended
        for ex in list(self.runs.values()):
            ex.stop("drain")
        for _row, task in list(self.tasks.values()):
            task.cancel()
        pending = [ex.task for ex in self.runs.values() if ex.task is not None]
        pending += [t for _r, t in self.tasks.values()]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # --- loops ---------------------------------------------------------------------------
    async def _backoff(self, what: str, exc: BaseException, failures: int) -> None:
        delay = _backoff_delay(failures)
        log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
        await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def _claim_runs(self) -> None:
        failures = 0
        while not self.stopping:
            if len(self.runs) >= self.concurrency:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            if not self.sweeper.held:  # a claim now would be swept at once
                await self._sleep(self.settings.sweep_interval)
                continue
            if self.runs and not self.backpressure.check():  # never with nothing in flight
                await self._sleep(PAUSE)
                continue
            try:
                row = await self._call(
                    self.store.claim_run, self.name, self.registry.graph_ids,
                    self.registry.allow_pickled, self.ttl, self.sweeper.key,
                )
                failures = 0
            except StoreError as exc:
                failures += 1
                await self._backoff("claiming runs", exc, failures)
                continue
            if self.stopping and row is not None:
                await asyncio.to_thread(self.store.release_run, row.run_id, row.epoch)
                return
            if row is None:
                await self._wait(self._run_wake, self._idle)
                continue
            self._start_run(row)

    async def _claim_tasks(self) -> None:
        if self.task_slots <= 0:
            return
        failures = 0
        while not self.stopping:
            free = self.task_slots - len(self.tasks)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            if not self.sweeper.held:
                await self._sleep(self.settings.sweep_interval)
                continue
            try:
                rows = await self._call(
                    self.store.claim_tasks, self.name, self.registry.graph_ids,
                    self.registry.allow_pickled, self.ttl, free, self.sweeper.key,
                )
                failures = 0
            except StoreError as exc:
                failures += 1
                await self._backoff("claiming tasks", exc, failures)
                continue
            if not rows:  # tasks submitted in this process wake us at once (Notifier.emit)
                await self._wait(self._task_wake, max(self._idle, 0.25))
                continue
            for row in rows:
                task = asyncio.create_task(self._run_task(row))
                self.tasks[row.task_key] = (row, task)

    async def _wait(self, wake: asyncio.Event, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(wake.wait(), self.poll if timeout is None else timeout)
        except TimeoutError:
            pass
        wake.clear()

    async def _call(self, func: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._own, func, *args)

    def _check_abandoned(self) -> None:
        """Recycle the worker once it holds too many abandoned node threads."""
        count = abandoned_threads()
        if (count < self.settings.max_abandoned_threads or self.exit_code
                or not self._recycles):  # embedded (treadle dev): its process decides
            return
        self.exit_code = EXIT_RECYCLE
        log.error("worker %s holds %d abandoned node threads (bound %d, "
                  "TREADLE_MAX_ABANDONED_THREADS): recycling: no new claims, handing its runs "
                  "back, then exiting with code %d for its supervisor to restart it",
                  self.name, count, self.settings.max_abandoned_threads, EXIT_RECYCLE)
        if not self.stopping:
            self.request_stop()

    async def _heartbeats(self) -> None:
        interval = self.ttl / 3
        while True:
            await asyncio.sleep(interval)
            self.ticked_at = time.monotonic()
            self._check_abandoned()
            runs = [(ex.run_id, ex.epoch) for ex in self.runs.values()]
            tasks = [(row.task_key, row.epoch) for row, _t in self.tasks.values()]
            if not runs and not tasks:
                self._last_heartbeat = time.monotonic()
                continue
            try:
                beat = await self._call(self.store.heartbeat, self.name, runs, tasks, self.ttl)
            except StoreError as exc:
                log.warning("heartbeat failed (%s)", exc)
                if time.monotonic() - self._last_heartbeat > self.ttl:
                    # Our leases have expired: whatever we write now would be refused.
                    for ex in list(self.runs.values()):
                        if not ex.ending:
                            ex.lease_lost()
                        ex.stop("lost")
                    for _row, task in list(self.tasks.values()):
                        if not task.cancelling():
                            metrics.LEASE_LOSSES.labels("task").inc()
                        task.cancel()
                continue
            self._last_heartbeat = time.monotonic()
            for run_id, epoch in runs:
                held = self.runs.get(run_id)
                if held is None or held.epoch != epoch or held.ending:
                    continue  # ended while the heartbeat was in flight
                if run_id not in beat.runs:
                    log.warning("run %s: lease lost (epoch %d); stopping it here", run_id, epoch)
                    held.lease_lost()
                    held.stop("lost")
                elif beat.runs[run_id]:
                    held.stop(str(beat.runs[run_id]))
            missing = [(k, e) for k, e in tasks if k not in beat.tasks and k in self.tasks]
            if missing:
                await self._check_lost_tasks(missing)

    async def _advertisements(self) -> None:
        """Refresh this worker's advertisement every TTL/3 while it takes work (its own loop:
        a slow store never delays the lease heartbeats)."""
        while not self.stopping:
            await self._sleep(self.ttl / 3)
            if not self.stopping:
                await self._advertise()

    async def _advertise(self) -> None:
        """Upsert this worker's row in ``treadle_workers`` (the graphs it serves, its load):
        a caller whose run waits on a graph no live worker serves is told so."""
        info = WorkerInfo(
            worker_id=self.worker_id, name=self.name,
            graph_ids=[g for g in self.registry.graph_ids if g.startswith(REF_PREFIX)],
            allow_pickled=self.registry.allow_pickled, slots=self.concurrency,
            running=len(self.runs), started_at=0.0, heartbeat_at=0.0, expires_at=0.0)
        try:
            await self._call(self.store.register_worker, info, self.ttl)
        except StoreError as exc:
            log.warning("advertising worker %s failed (%s)", self.name, exc)

    async def _check_lost_tasks(self, missing: list[tuple[str, int]]) -> None:
        """Tasks a heartbeat did not extend: lost, or finished while it was in flight."""
        try:
            rows = {r.task_key: r for r in await asyncio.to_thread(
                self.store.get_tasks, [k for k, _e in missing])}
        except StoreError:
            return  # the next heartbeat decides
        for key, epoch in missing:
            row = rows.get(key)
            if row is not None and row.epoch == epoch and row.status in ("success", "error"):
                continue  # we finished it meanwhile
            entry = self.tasks.get(key)
            if entry is not None and entry[0].epoch == epoch:
                log.warning("task %s: lease lost; stopping it here", key)
                metrics.LEASE_LOSSES.labels("task").inc()
                entry[1].cancel()

    def _on_cancel(self, run_id: str) -> None:
        if run_id in self.runs:
            asyncio.ensure_future(self._check_cancel(run_id))

    async def _check_cancel(self, run_id: str) -> None:
        try:
            row = await asyncio.to_thread(self.store.get_run, run_id)
        except StoreError:
            return  # the heartbeat will tell
        ex = self.runs.get(run_id)
        if row is not None and row.cancel and ex is not None and ex.epoch == row.epoch:
            ex.stop(row.cancel)

    # --- runs ----------------------------------------------------------------------------
    def _start_run(self, row: RunRow) -> None:
        metrics.run_claimed(row.graph_id, row.attempt)
        ex = RunAttempt(row, AttemptDeps(
            store=self.store, registry=self.registry, notifier=self.notifier,
            settings=self.settings, worker=self.name, poll=self.poll, hooks=self.hooks))
        self.runs[row.run_id] = ex
        ex.task = asyncio.create_task(ex.run())
        ex.task.add_done_callback(lambda _t: self._ended(row.run_id, ex))

    def _ended(self, run_id: str, ex: RunAttempt) -> None:
        if self.runs.get(run_id) is ex:
            del self.runs[run_id]
        self._slot_free.set()
        self._check_abandoned()

    # --- tasks ---------------------------------------------------------------------------
    async def _run_task(self, row: TaskRow) -> None:
        metrics.set_graph(row.graph_id)  # this task's node metrics
        try:
            await run_task(self.store, self.registry, row)
            self.notifier.emit(CHANNEL_TASK_DONE, row.task_key)
        except asyncio.CancelledError:
            pass
        except StoreError as exc:
            log.warning("task %s: recording its outcome failed (%s)", row.task_key, exc)
        finally:
            if self.tasks.get(row.task_key, (None,))[0] is row:
                del self.tasks[row.task_key]
            self._slot_free.set()


def _backoff_delay(failures: int) -> float:
    """Exponential backoff with jitter: about 0.5 s, 1 s, 2 s ... up to 30 s."""
    return float(min(30.0, 0.5 * 2 ** min(failures - 1, 6)) * (0.5 + random.random() / 2))
