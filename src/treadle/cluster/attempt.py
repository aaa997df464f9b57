"""A run attempt on a worker: from its claimed row to its recorded end.

:class:`RunExecution` is one attempt (its lease epoch, its asyncio task, why it stopped);
:class:`RunAttempts` is the part of :class:`~treadle.cluster.worker.Worker` that executes
it: prepare the input and claim the thread, drive the graph under the run's timeout, and
record how it ended — a final status (with the thread record's state), a hand-back to the
queue on drain, or nothing when the lease was lost (the run resumes elsewhere). Metrics,
the attempt's span and its log context are kept here too.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any

from treadle import logs, metrics, tracing
from treadle.cluster.codec import decode, encode
from treadle.cluster.drive import drive, validate_input
from treadle.cluster.notify import Notifier
from treadle.cluster.remote import call_remote
from treadle.config import Settings
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
from treadle.store.base import ClaimThreadNow, PutWrites, Store
from treadle.store.queue import CANCEL_STATUS, CHANNEL_RUN_DONE, CHANNEL_RUNS, RunRow

__all__ = ["RunAttempts", "RunExecution"]

log = logging.getLogger("treadle.worker")


class RunExecution(Execution):
    """A run attempt on this worker: its lease epoch, its asyncio task, why it stopped."""

    def __init__(self, worker: RunAttempts, row: RunRow) -> None:
        super().__init__(row.run_id, row.epoch, row.graph_id)
        self.worker = worker
        self.row = row
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: str | None = None
        self.ending = False  # its final status (or hand-off) is being written
        self.payload: dict[str, Any] = {}
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
        w = self.worker
        return await call_remote(
            w.store, w.notifier, run_id=self.run_id, graph_id=self.graph_id, node=node,
            input=input, config=config, poll=w.poll,
        )


class RunAttempts:
    """Executing run attempts; mixed into the worker, which provides these."""

    settings: Settings
    name: str
    store: Store
    registry: GraphRegistry
    notifier: Notifier
    poll: float

    async def _execute(self, ex: RunExecution) -> None:
        row = ex.row
        started = time.monotonic()
        metrics.set_graph(row.graph_id)  # this task's node metrics
        try:
            ex.payload = decode(row.payload)
        except Exception:  # noqa: BLE001 - reported in _execute_attempt, where it is decoded for use
            ex.payload = {}
        # The attempt's log context and span (a child of the span that queued the run).
        with logs.bound(run_id=row.run_id, thread_id=row.thread_id, graph_id=row.graph_id,
                        attempt=row.attempt), \
                tracing.span("treadle.run", {
                    "treadle.run_id": row.run_id, "treadle.thread_id": row.thread_id,
                    "treadle.graph_id": row.graph_id, "treadle.attempt": row.attempt,
                    "treadle.epoch": row.epoch, "treadle.worker": self.name,
                }, parent=ex.payload.get(tracing.TRACE_KEY), kind="consumer"):
            try:
                await self._execute_attempt(ex)
            finally:
                if ex.refused:
                    # The refused state sits in reference cycles (the graph loop's frames
                    # and its exceptions): free it now, not at the next full collection,
                    # which an idle worker may not reach for a long time.
                    gc.collect()
                metrics.run_ended(row.graph_id, ex.outcome, time.monotonic() - started)
                await ex.graph_exit.aclose()  # a graph made by a factory for this run

    async def _execute_attempt(self, ex: RunExecution) -> None:
        row = ex.row
        log.info("run %s (thread %s, attempt %d/%d, epoch %d) started", row.run_id,
                 row.thread_id, row.attempt, row.max_attempts, row.epoch)
        if row.cancel:  # asked to stop while it was being handed over
            ex.stop_reason = row.cancel
            await self._stopped(ex)
            return
        # Claims that did not count an attempt were hand-backs (drains, store failures):
        # a run that cannot get anywhere must not circle between workers for ever.
        handbacks = row.epoch - row.attempt
        if handbacks > self.settings.run_max_handbacks:
            error = (f"the run was handed back to the queue {handbacks} times without "
                     f"finishing (TREADLE_RUN_MAX_HANDBACKS={self.settings.run_max_handbacks}); "
                     "giving up: the workers' logs say why each attempt stopped")
            self._thread_state(ex, "error", error=error)
            await self._finish(ex, "error", error=error)
            return
        try:
            payload = ex.payload = decode(row.payload)
            graph = await ex.graph_exit.enter_async_context(self.registry.open(
                row.graph_id, _factory_config(row, payload), "threads.create_run",
                context=payload.get("context")))
            input, config, kwargs = await self._prepare(ex, graph, payload)
        except asyncio.CancelledError:
            await self._stopped(ex)
            return
        except FencedWriteError:
            log.warning("run %s: taken over before it started here (epoch %d is stale)",
                        row.run_id, row.epoch)
            ex.lease_lost()
            return
        except StoreDataError as exc:
            await self._refused(ex, exc)
            return
        except StoreError as exc:
            log.warning("run %s: the store failed as it started (%s); handing it back",
                        row.run_id, exc)
            ex.stop_reason = "drain"
            await self._stopped(ex)
            return
        except (TreadleError, ValueError, TypeError, KeyError) as exc:
            await self._finish(ex, "error", error=f"cannot start the run: {exc}")
            return
        # The run's own run_timeout, else this worker's default (TREADLE_RUN_TIMEOUT; 0: none),
        # counted from the run's first start. A node blocked in a sync call is abandoned.
        limit = row.timeout_s if row.timeout_s is not None else (self.settings.run_timeout or None)
        timeout = None
        if limit is not None and row.started_at is not None:
            timeout = max(0.0, row.started_at + limit - await asyncio.to_thread(self.store.now))
        try:
            async with asyncio.timeout(timeout):
                result = await drive(self.store, row, ex.payload, graph, input, config, kwargs)
            status = "success"
            state = await graph.aget_state({"configurable": {"thread_id": row.thread_id}})
            if state.next:
                status = "interrupted"
            self._thread_state(ex, "interrupted" if state.next else "idle", state)
        except asyncio.CancelledError:
            await self._stopped(ex)
            return
        except FencedWriteError:
            log.warning("run %s: writes refused, another worker took the run over (epoch %d "
                        "is stale); dropping this attempt", row.run_id, row.epoch)
            ex.lease_lost()
            return
        except StoreDataError as exc:
            await self._refused(ex, exc)
            return
        except StoreError as exc:
            # The store failed under the run (a restart, a failover): not the run's fault.
            # Hand it back (or let the lease expire) so it resumes from its last commit.
            log.warning("run %s: the store failed under it (%s); handing it back", row.run_id, exc)
            ex.stop_reason = "drain"
            await self._stopped(ex)
            return
        except TimeoutError as exc:
            if isinstance(exc, NodeTimeoutError):
                self._thread_state(ex, "error", error=f"{type(exc).__name__}: {exc}")
                await self._finish(ex, "error", error=f"{type(exc).__name__}: {exc}")
            else:
                self._thread_state(ex, "idle")
                await self._finish(ex, "timeout", error=f"run exceeded its timeout of {limit:g}s")
            return
        except Exception as exc:
            log.warning("run %s failed: %s: %s", row.run_id, type(exc).__name__, exc)
            self._thread_state(ex, "error", error=f"{type(exc).__name__}: {exc}")
            await self._finish(ex, "error", error=f"{type(exc).__name__}: {exc}")
            return
        await self._finish(ex, status, result=encode(result))

    async def _prepare(self, ex: RunExecution, graph: Any, payload: dict[str, Any]
                       ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        row = ex.row
        config = dict(payload.get("config") or {})
        conf = dict(config.get("configurable") or {})
        conf["thread_id"] = row.thread_id
        with_run_context(conf, RunContext(execution=ex))
        config["configurable"] = conf
        try:
            config["run_id"] = uuid.UUID(row.run_id)
        except ValueError:
            pass
        # Checkpoint metadata carries the run id: a later attempt finds where this run
        # got to, and a rollback finds what to delete.
        config["metadata"] = {**(config.get("metadata") or {}), "run_id": row.run_id}
        input = payload.get("input")
        if input is not None:
            validate_input(graph, input)
        command = payload.get("command")
        if command:
            from langgraph.types import Command

            input = Command(**{k: v for k, v in command.items()
                               if k in ("resume", "update", "goto") and v is not None})
        # Claim the thread first: from this commit on, the previous attempt's writes are
        # refused, so the checkpoint read next is final.
        await self.store.submit_async(ClaimThreadNow(row.thread_id, token=ex.token,
                                                     run_id=row.run_id, run_epoch=row.epoch))
        ex.claimed = True
        # A run that already committed a checkpoint continues from it: giving the input
        # again would start it over (and append the input twice to a message list).
        latest = await asyncio.to_thread(self.store.get_checkpoint, row.thread_id, "", None)
        if latest is not None and latest.row.run_id == row.run_id and not command:
            input = None
        return input, config, dict(payload.get("kwargs") or {})

    async def _refused(self, ex: RunExecution, exc: StoreDataError, *,
                       last: bool = False) -> None:
        """The store refused the run's data for good: fail the run now, with the reason
        (handing it back would fail the same way on every worker, for ever)."""
        # Text only, here and in the log record: the exception's traceback holds the
        # frames of the graph's loop, and so its state (perhaps hundreds of MB), for as
        # long as a log handler keeps the record.
        reason = str(exc)
        ex.refused = True
        log.warning("run %s: %s; failing the run", ex.run_id, reason)
        error = f"{type(exc).__name__}: {reason}"
        self._thread_state(ex, "error", error=error)
        await self._finish(ex, "error", error=error, last=last)

    async def _barrier(self, ex: RunExecution) -> None:
        """Wait until every write this process queued before now has committed (the
        committer applies batches in order, so an empty write is a barrier)."""
        try:
            await self.store.submit_async(
                PutWrites(ex.row.thread_id, checkpoint_ns="", checkpoint_id="", rows=[], upsert=False)
            )
        except StoreError as exc:
            log.warning("run %s: waiting for its last writes failed (%s)", ex.run_id, exc)

    async def _stopped(self, ex: RunExecution) -> None:
        ex.ending = True
        reason = ex.stop_reason
        tracing.set_attributes({"treadle.stopped": reason})
        row = ex.row
        if reason in CANCEL_STATUS:
            await self._barrier(ex)
            if reason == "rollback":
                await asyncio.to_thread(self.store.delete_for_runs, [row.run_id])
            log.info("run %s stopped on request (%s)", row.run_id, reason)
            self._thread_state(ex, "idle")
            await self._finish(ex, CANCEL_STATUS[reason], error=f"{reason} requested")
        elif reason == "drain":
            await self._barrier(ex)
            try:
                released = await asyncio.to_thread(self.store.release_run, row.run_id, row.epoch)
            except StoreError as exc:
                log.warning("run %s: hand-off failed (%s); its lease will expire", row.run_id, exc)
                return
            if released:
                ex.outcome = "handed_over"
                self.notifier.emit(CHANNEL_RUNS, row.run_id)
            else:
                ex.lease_lost()
            log.info("run %s handed back to the queue%s", row.run_id,
                     "" if released else " (it had been taken over already)")
        elif reason == "lost":
            log.warning("run %s: stopped, its lease is lost", row.run_id)
        # "shutdown": leave the lease to expire

    async def _finish(self, ex: RunExecution, status: str, *, result: bytes | None = None,
                      error: str | None = None, last: bool = False) -> None:
        ex.ending = True
        row = ex.row
        error = _clean(error)
        tracing.set_attributes({"treadle.status": status},
                               error=error if status in ("error", "timeout") else None)
        try:
            done = await asyncio.to_thread(self.store.finish_run, row.run_id, row.epoch, status,
                                           result=result, error=error, thread=ex.thread_update)
        except StoreDataError as exc:
            if last:
                log.warning("run %s: recording %s failed (%s); its lease will expire",
                            row.run_id, status, str(exc))
                return
            # Its result, its error or the thread's values cannot be stored: record the
            # store's refusal instead (an error with no result, no values).
            await self._refused(ex, exc, last=True)
            return
        except StoreError as exc:
            log.warning("run %s: recording %s failed (%s); its lease will expire and the run "
                        "resumes elsewhere", row.run_id, status, exc)
            return
        if done:
            ex.outcome = status
            log.info("run %s %s", row.run_id, status)
            self.notifier.emit(CHANNEL_RUN_DONE, row.run_id)
            self.notifier.emit(CHANNEL_RUNS, row.run_id)
            await self._after_run(ex, status)
        else:
            log.warning("run %s: status %s refused, another worker took the run over",
                        row.run_id, status)
            ex.lease_lost()

    def _thread_state(self, ex: RunExecution, status: str, state: Any = None,
                      error: str | None = None) -> None:
        """The thread record's state once the run ends (threads made through the HTTP
        API): written with the run's final status, in the same transaction. The claim
        already marked it busy."""
        if not ex.payload.get("thread_record"):
            return
        from treadle.jsonable import to_json
        from treadle.store.thread_records import ThreadUpdate

        update = ThreadUpdate(ex.row.thread_id, status, error=_clean(error))
        if state is not None:
            update.values = to_json(state.values)
            update.interrupts = {t.id: to_json(list(t.interrupts)) for t in state.tasks
                                 if getattr(t, "interrupts", None)}
        ex.thread_update = update

    async def _after_run(self, ex: RunExecution, status: str) -> None:
        """What a run asked for at its end: delete a stateless run's thread, call a webhook."""
        payload = ex.payload
        if payload.get("on_completion") == "delete":
            try:
                await asyncio.to_thread(self.store.delete_thread, ex.row.thread_id)
                await asyncio.to_thread(self.store.delete_thread_record, ex.row.thread_id)
            except StoreError as exc:
                log.warning("run %s: deleting its thread failed (%s)", ex.run_id, exc)
        if payload.get("webhook"):
            from treadle.server.webhooks import schedule_webhook

            schedule_webhook(self.store, str(payload["webhook"]), ex.run_id, self.settings)


def _factory_config(row: RunRow, payload: dict[str, Any]) -> dict[str, Any]:
    """The config a graph factory gets for a run: the run's, with its thread and run ids."""
    config = dict(payload.get("config") or {})
    config["configurable"] = {**(config.get("configurable") or {}),
                              "thread_id": row.thread_id, "run_id": row.run_id}
    return config


def _clean(error: str | None) -> str | None:
    """A run's error as stored, and so as every client reads it: text a node's exception
    made, without NUL or lone surrogates, and with its secrets masked."""
    if error is None:
        return None
    from treadle.redaction import redact

    return redact(error.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00"))
