"""A run attempt on a worker: from its claimed row to its recorded end.

:class:`RunAttempt` is one attempt (its lease epoch, its asyncio task, why it stopped) and
what executes it: prepare the input and claim the thread, drive the graph under the run's
timeout, and record how it ended — a final status, a hand-back to the queue on drain, or
nothing when the lease was lost (the run resumes elsewhere). Metrics, the attempt's span
and its log context are kept here too. Everything it uses comes in its constructor
(:class:`AttemptDeps`, one per worker).

The start and end of a run are hook chains (:class:`RunHooks`), which the process embedding
the worker fills: ``on_start`` hooks see each attempt start (the HTTP API's audit log);
``on_status`` hooks see the thread's status as the run ends (the HTTP API
records it on the thread, written with the run's final status in one transaction);
``after_end`` hooks run once the final status is recorded (the HTTP API deletes a
stateless run's thread, calls its webhook). ``treadle.server.run_hooks`` has the API's.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from treadle import logs, metrics, tracing
from treadle.cluster.codec import encode
from treadle.cluster.drive import drive, validate_input
from treadle.cluster.notify import Notifier
from treadle.cluster.remote import call_remote
from treadle.cluster.spec import RunSpec
from treadle.config import Settings, merge_config
from treadle.errors import (
    FencedWriteError,
    NodeTimeoutError,
    StoreDataError,
    StoreError,
    TreadleError,
)
from treadle.graphs.registry import GraphRegistry
from treadle.run_context import RunContext, with_run_context
from treadle.runtime.execution import Execution
from treadle.store.base import Store
from treadle.store.checkpoints import ClaimThreadNow, PutWrites
from treadle.store.encryption import CONTEXT_KEY, context_scope
from treadle.store.queue import CANCEL_STATUS, CHANNEL_RUN_DONE, CHANNEL_RUNS, RunRow

__all__ = ["AfterEnd", "AttemptDeps", "OnStart", "OnStatus", "RunAttempt", "RunHooks", "clean_error"]

log = logging.getLogger("treadle.worker")

#: ``hook(attempt, thread_status, state, error)``: the thread's status as the run ends
#: ("idle", "interrupted", "error"), the graph's state (a StateSnapshot, or None) and the
#: run's error (as stored). It may set ``attempt.thread_update``.
OnStatus = Callable[["RunAttempt", str, Any, "str | None"], None]
#: ``await hook(attempt, status)``: the run's final status is recorded.
AfterEnd = Callable[["RunAttempt", str], Awaitable[None]]
#: ``hook(attempt)``: an attempt of the run starts on this worker (must not block).
OnStart = Callable[["RunAttempt"], None]


@dataclass
class RunHooks:
    """What happens as a run ends, beyond its status: registered by the embedding process."""

    on_status: list[OnStatus] = field(default_factory=list)
    after_end: list[AfterEnd] = field(default_factory=list)
    on_start: list[OnStart] = field(default_factory=list)


@dataclass(frozen=True)
class AttemptDeps:
    """What every run attempt on a worker uses."""

    store: Store
    registry: GraphRegistry
    notifier: Notifier
    settings: Settings
    worker: str  # the worker's name (the attempt's span says which)
    poll: float  # seconds between polls for a remote node task's outcome
    hooks: RunHooks


class RunAttempt(Execution):
    """A run attempt on this worker: its lease epoch, its asyncio task, why it stopped."""

    def __init__(self, row: RunRow, deps: AttemptDeps) -> None:
        super().__init__(row.run_id, row.epoch, row.graph_id)
        self.deps = deps
        self.store = deps.store
        self.settings = deps.settings
        self.row = row
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: str | None = None
        self.ending = False  # its final status (or hand-off) is being written
        self.spec = RunSpec()
        self.graph_exit = AsyncExitStack()  # leaves a graph a factory made for this run
        self.thread_update: Any = None  # the thread record's state, written with the status
        # How it ended, for treadle_runs_total: the final status recorded, "handed_over"
        # or, when nothing was recorded (lease lost, fenced, store down), "lost".
        self.outcome = "lost"
        self.refused = False  # the store refused its data (perhaps a huge state)
        self._lease_counted = False

    def lease_lost(self) -> None:
        """Count this attempt's lease as lost, once however the worker found out."""
        if not self._lease_counted:
            self._lease_counted = True
            metrics.LEASE_LOSSES.labels("run").inc()

    def stop(self, reason: str) -> None:
        if self.stop_reason is None and not self.ending:
            self.stop_reason = reason
            if self.task is not None:
                self.task.cancel()

    async def dispatch(self, node: str, input: Any, config: dict[str, Any]) -> Any:
        d = self.deps
        return await call_remote(
            d.store, d.notifier, run_id=self.run_id, graph_id=self.graph_id, node=node,
            input=input, config=config, poll=d.poll,
        )

    async def run(self) -> None:
        """Execute the attempt to its end (the worker runs it as the attempt's task)."""
        row = self.row
        started = time.monotonic()
        metrics.set_graph(row.graph_id)  # this task's node metrics
        # Reported in _execute_attempt, where it is decoded for use.
        self.spec = RunSpec.read(row.payload) or RunSpec()
        # What this run writes is sealed with the encryption context of the request that
        # created it (a langgraph.json Encryption's ctx.metadata; ignored by the keyring).
        configurable = (self.spec.config or {}).get("configurable") or {}
        encryption_ctx = configurable.get(CONTEXT_KEY)
        # The attempt's log context and span (a child of the span that queued the run).
        with logs.bound(run_id=row.run_id, thread_id=row.thread_id, graph_id=row.graph_id,
                        attempt=row.attempt), \
                tracing.span("treadle.run", {
                    "treadle.run_id": row.run_id, "treadle.thread_id": row.thread_id,
                    "treadle.graph_id": row.graph_id, "treadle.attempt": row.attempt,
                    "treadle.epoch": row.epoch, "treadle.worker": self.deps.worker,
                }, parent=self.spec.trace, kind="consumer"), \
                context_scope(encryption_ctx if isinstance(encryption_ctx, dict) else None):
            try:
                await self._execute_attempt()
            finally:
                if self.refused:
                    # The refused state sits in reference cycles (the graph loop's frames
                    # and its exceptions): free it now, not at the next full collection,
                    # which an idle worker may not reach for a long time.
                    gc.collect()
                metrics.run_ended(row.graph_id, self.outcome, time.monotonic() - started)
                await self.graph_exit.aclose()  # a graph made by a factory for this run

    async def _execute_attempt(self) -> None:
        row = self.row
        log.info("run %s (thread %s, attempt %d/%d, epoch %d) started", row.run_id,
                 row.thread_id, row.attempt, row.max_attempts, row.epoch)
        for hook in self.deps.hooks.on_start:
            try:
                hook(self)
            except Exception:  # a hook's own failure never fails the run
                log.exception("run %s: a start hook failed", self.run_id)
        if row.cancel:  # asked to stop while it was being handed over
            self.stop_reason = row.cancel
            await self._stopped()
            return
        # Claims that did not count an attempt were hand-backs (drains, store failures):
        # a run that cannot get anywhere must not circle between workers for ever.
        handbacks = row.epoch - row.attempt
        if handbacks > self.settings.run_max_handbacks:
            error = (f"the run was handed back to the queue {handbacks} times without "
                     f"finishing (TREADLE_RUN_MAX_HANDBACKS={self.settings.run_max_handbacks}); "
                     "giving up: the workers' logs say why each attempt stopped")
            self._thread_state("error", error=error)
            await self._finish("error", error=error)
            return
        try:
            spec = self.spec = RunSpec.decode(row.payload)
            graph = await self.graph_exit.enter_async_context(self.deps.registry.open(
                row.graph_id, merge_config(spec.config, thread_id=row.thread_id,
                                           run_id=row.run_id),
                "threads.create_run", context=spec.context))
            input, config, kwargs = await self._prepare(graph, spec)
        except asyncio.CancelledError:
            await self._stopped()
            return
        except FencedWriteError:
            log.warning("run %s: taken over before it started here (epoch %d is stale)",
                        row.run_id, row.epoch)
            self.lease_lost()
            return
        except StoreDataError as exc:
            await self._refused(exc)
            return
        except StoreError as exc:
            log.warning("run %s: the store failed as it started (%s); handing it back",
                        row.run_id, exc)
            self.stop_reason = "drain"
            await self._stopped()
            return
        except (TreadleError, ValueError, TypeError, KeyError) as exc:
            await self._finish("error", error=f"cannot start the run: {exc}")
            return
        # The run's own run_timeout, else this worker's default (TREADLE_RUN_TIMEOUT; 0: none),
        # counted from the run's first start. A node blocked in a sync call is abandoned.
        limit = row.timeout_s if row.timeout_s is not None else (self.settings.run_timeout or None)
        timeout = None
        if limit is not None and row.started_at is not None:
            timeout = max(0.0, row.started_at + limit - await asyncio.to_thread(self.store.now))
        try:
            async with asyncio.timeout(timeout):
                result = await drive(self.store, row, spec, graph, input, config, kwargs)
            status = "success"
            state = await graph.aget_state({"configurable": {"thread_id": row.thread_id}})
            if state.next:
                status = "interrupted"
            self._thread_state("interrupted" if state.next else "idle", state)
        except asyncio.CancelledError:
            await self._stopped()
            return
        except FencedWriteError:
            log.warning("run %s: writes refused, another worker took the run over (epoch %d "
                        "is stale); dropping this attempt", row.run_id, row.epoch)
            self.lease_lost()
            return
        except StoreDataError as exc:
            await self._refused(exc)
            return
        except StoreError as exc:
            # The store failed under the run (a restart, a failover): not the run's fault.
            # Hand it back (or let the lease expire) so it resumes from its last commit.
            log.warning("run %s: the store failed under it (%s); handing it back", row.run_id, exc)
            self.stop_reason = "drain"
            await self._stopped()
            return
        except TimeoutError as exc:
            if isinstance(exc, NodeTimeoutError):
                self._thread_state("error", error=f"{type(exc).__name__}: {exc}")
                await self._finish("error", error=f"{type(exc).__name__}: {exc}")
            else:
                self._thread_state("idle")
                await self._finish("timeout", error=f"run exceeded its timeout of {limit:g}s")
            return
        except Exception as exc:
            log.warning("run %s failed: %s: %s", row.run_id, type(exc).__name__, exc)
            self._thread_state("error", error=f"{type(exc).__name__}: {exc}")
            await self._finish("error", error=f"{type(exc).__name__}: {exc}")
            return
        await self._finish(status, result=encode(result))

    async def _prepare(self, graph: Any, spec: RunSpec
                       ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        row = self.row
        config = merge_config(spec.config, thread_id=row.thread_id)
        with_run_context(config["configurable"], RunContext(execution=self))
        try:
            config["run_id"] = uuid.UUID(row.run_id)
        except ValueError:
            pass
        # Checkpoint metadata carries the run id: a later attempt finds where this run
        # got to, and a rollback finds what to delete.
        config["metadata"] = {**(config.get("metadata") or {}), "run_id": row.run_id}
        input = spec.input
        if input is not None:
            validate_input(graph, input)
        command = spec.command
        if command:
            from langgraph.types import Command

            input = Command(**{k: v for k, v in command.items()
                               if k in ("resume", "update", "goto") and v is not None})
        # Claim the thread first: from this commit on, the previous attempt's writes are
        # refused, so the checkpoint read next is final.
        await self.store.submit_async(ClaimThreadNow(row.thread_id, token=self.token,
                                                     run_id=row.run_id, run_epoch=row.epoch))
        self.claimed = True
        # A run that already committed a checkpoint continues from it: giving the input
        # again would start it over (and append the input twice to a message list).
        latest = await asyncio.to_thread(self.store.get_checkpoint, row.thread_id, "", None)
        if latest is not None and latest.row.run_id == row.run_id and not command:
            input = None
        return input, config, dict(spec.kwargs)

    async def _refused(self, exc: StoreDataError, *,
                       last: bool = False) -> None:
        """The store refused the run's data for good: fail the run now, with the reason
        (handing it back would fail the same way on every worker, for ever)."""
        # Text only, here and in the log record: the exception's traceback holds the
        # frames of the graph's loop, and so its state (perhaps hundreds of MB), for as
        # long as a log handler keeps the record.
        reason = str(exc)
        self.refused = True
        log.warning("run %s: %s; failing the run", self.run_id, reason)
        error = f"{type(exc).__name__}: {reason}"
        self._thread_state("error", error=error)
        await self._finish("error", error=error, last=last)

    async def _barrier(self) -> None:
        """Wait until every write this process queued before now has committed (the
        committer applies batches in order, so an empty write is a barrier)."""
        try:
            await self.store.submit_async(
                PutWrites(self.row.thread_id, checkpoint_ns="", checkpoint_id="", rows=[], upsert=False)
            )
        except StoreError as exc:
            log.warning("run %s: waiting for its last writes failed (%s)", self.run_id, exc)

    async def _stopped(self) -> None:
        self.ending = True
        reason = self.stop_reason
        tracing.set_attributes({"treadle.stopped": reason})
        row = self.row
        if reason in CANCEL_STATUS:
            await self._barrier()
            if reason == "rollback":
                await asyncio.to_thread(self.store.delete_for_runs, [row.run_id])
            log.info("run %s stopped on request (%s)", row.run_id, reason)
            self._thread_state("idle")
            await self._finish(CANCEL_STATUS[reason], error=f"{reason} requested")
        elif reason == "drain":
            await self._barrier()
            try:
                released = await asyncio.to_thread(self.store.release_run, row.run_id, row.epoch)
            except StoreError as exc:
                log.warning("run %s: hand-off failed (%s); its lease will expire", row.run_id, exc)
                return
            if released:
                self.outcome = "handed_over"
                self.deps.notifier.emit(CHANNEL_RUNS, row.run_id)
            else:
                self.lease_lost()
            log.info("run %s handed back to the queue%s", row.run_id,
                     "" if released else " (it had been taken over already)")
        elif reason == "lost":
            log.warning("run %s: stopped, its lease is lost", row.run_id)
        # "shutdown": leave the lease to expire

    async def _finish(self, status: str, *, result: bytes | None = None,
                      error: str | None = None, last: bool = False) -> None:
        self.ending = True
        row = self.row
        error = clean_error(error)
        tracing.set_attributes({"treadle.status": status},
                               error=error if status in ("error", "timeout") else None)
        try:
            done = await asyncio.to_thread(self.store.finish_run, row.run_id, row.epoch, status,
                                           result=result, error=error, thread=self.thread_update)
        except StoreDataError as exc:
            if last:
                log.warning("run %s: recording %s failed (%s); its lease will expire",
                            row.run_id, status, str(exc))
                return
            # Its result, its error or the thread's values cannot be stored: record the
            # store's refusal instead (an error with no result, no values).
            await self._refused(exc, last=True)
            return
        except StoreError as exc:
            log.warning("run %s: recording %s failed (%s); its lease will expire and the run "
                        "resumes elsewhere", row.run_id, status, exc)
            return
        if done:
            self.outcome = status
            log.info("run %s %s", row.run_id, status)
            self.deps.notifier.emit(CHANNEL_RUN_DONE, row.run_id)
            self.deps.notifier.emit(CHANNEL_RUNS, row.run_id)
            await self._after_run(status)
        else:
            log.warning("run %s: status %s refused, another worker took the run over",
                        row.run_id, status)
            self.lease_lost()

    def _thread_state(self, status: str, state: Any = None,
                      error: str | None = None) -> None:
        """The thread's status as the run ends (``state``: the graph's, when it has one):
        the ``on_status`` hooks (the HTTP API's thread record, written with the run's
        final status in the same transaction)."""
        error = clean_error(error)
        for hook in self.deps.hooks.on_status:
            hook(self, status, state, error)

    async def _after_run(self, status: str) -> None:
        """The run's final status is recorded: the ``after_end`` hooks (the HTTP API's
        on_completion and webhook); one failing does not stop the others."""
        for hook in self.deps.hooks.after_end:
            try:
                await hook(self, status)
            except Exception:  # a hook's own failure never fails the recorded run
                log.exception("run %s: an after-end hook failed", self.run_id)


def clean_error(error: str | None) -> str | None:
    """A run's error as stored, and so as every client reads it: text a node's exception
    made, without NUL or lone surrogates, and with its secrets masked."""
    if error is None:
        return None
    from treadle.redaction import redact

    return redact(error.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00"))
