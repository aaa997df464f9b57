"""Queueing a run: the one way a run gets into the queue.

The HTTP API (``treadle.server.run_service``, and so crons) and ``runtime="distributed"``
(``treadle.cluster.client``) build a :class:`~treadle.cluster.spec.RunSpec` and call
:func:`submit`: it starts the run's trace, writes the run with its encoded spec and wakes
this process's workers.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from treadle import tracing
from treadle.cluster.notify import notifier_for
from treadle.cluster.spec import RunSpec
from treadle.store import Store
from treadle.store.queue import CHANNEL_RUNS, NewRun, RunRow

__all__ = ["submit"]


def submit(store: Store, spec: RunSpec, *, run_id: str, thread_id: str, graph_id: str,
           stream: bool, max_attempts: int, timeout_s: float | None = None,
           metadata: Mapping[str, Any] | None = None, multitask: str = "enqueue",
           idempotency_key: str | None = None, request_hash: str | None = None,
           span_attributes: Mapping[str, Any] | None = None) -> tuple[RunRow, RunSpec]:
    """Queue run ``run_id`` of ``spec`` on ``thread_id`` (``multitask``: what to do when
    the thread is busy: ThreadBusyError for ``reject``). Returns the run's row and the
    spec as queued (with its trace context). With an idempotency key the row may be the
    run an earlier request queued with it (its run id differs from ``run_id``)."""
    # The run's trace starts here; its context rides in the spec to every attempt.
    with tracing.span("treadle.run.enqueue", {
            "treadle.run_id": run_id, "treadle.thread_id": thread_id,
            "treadle.graph_id": graph_id, **(span_attributes or {})}, kind="producer"):
        spec = dataclasses.replace(spec, trace=tracing.carrier())
        run = NewRun(
            run_id=run_id, thread_id=thread_id, graph_id=graph_id, payload=spec.encode(),
            max_attempts=max_attempts, stream=stream, timeout_s=timeout_s,
            metadata=json.dumps(dict(metadata or {}), default=str),
            idempotency_key=idempotency_key, request_hash=request_hash,
        )
        row = store.enqueue_run(run, multitask=multitask)
    notifier_for(store).emit(CHANNEL_RUNS, row.run_id)
    return row, spec
