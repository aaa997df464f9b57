"""``treadle worker``: execute queued runs and remote node tasks from a shared store."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import typer

from treadle.cli._app import app
from treadle.cli._output import _STORE_OPTION, _settings
from treadle.cli._telemetry import (
    _LOG_FORMAT_OPTION,
    _LOG_LEVEL_OPTION,
    _TRACE_EXPORTER_OPTION,
    setup_telemetry,
)
from treadle.cli._worker_options import _CONCURRENCY_OPTION, _MAX_LAG_OPTION, _MAX_RSS_OPTION
from treadle.errors import ConfigError
from treadle.store.urls import redact

if TYPE_CHECKING:
    from treadle.cluster.worker import Worker

_GRAPHS_ARG = typer.Argument(
    None, metavar="[REF | name=REF]...",
    help="Graphs to serve: path/file.py:attr, module:attr, or name=REF. Callers name the "
    "graph the same way (graph_id=name, or the REF itself).",
)


@app.command(short_help="Execute queued runs and node tasks until SIGTERM.")
def worker(
    graphs: list[str] | None = _GRAPHS_ARG,
    store: str | None = _STORE_OPTION,
    config: str | None = typer.Option(
        None, "--graphs", "--config", help="A langgraph.json whose graphs to serve (by their names)."
    ),
    concurrency: int | None = _CONCURRENCY_OPTION,
    max_rss_mb: float | None = _MAX_RSS_OPTION,
    max_loop_lag: float | None = _MAX_LAG_OPTION,
    task_slots: int | None = typer.Option(
        None, "--task-slots", min=0,
        help="Remote node tasks executed at once; 0 for none [TREADLE_WORKER_TASK_SLOTS].",
    ),
    lease_ttl: float | None = typer.Option(
        None, "--lease-ttl", help="Seconds a lease lives without a heartbeat [TREADLE_LEASE_TTL]."
    ),
    max_worker_losses: int | None = typer.Option(
        None, "--max-worker-losses", min=1,
        help="Times a run may lose its worker before it errors [TREADLE_MAX_WORKER_LOSSES].",
    ),
    sweep_interval: float | None = typer.Option(
        None, "--sweep-interval",
        help="Seconds between sweeps for runs of dead workers [TREADLE_SWEEP_INTERVAL].",
    ),
    drain_timeout: float | None = typer.Option(
        None, "--drain-timeout",
        help="On SIGTERM, seconds in-flight node tasks may take to finish [TREADLE_DRAIN_TIMEOUT].",
    ),
    poll_interval: float | None = typer.Option(
        None, "--poll-interval", help="Seconds between queue polls [TREADLE_POLL_INTERVAL]."
    ),
    allow_pickled_graphs: bool | None = typer.Option(
        None, "--allow-pickled-graphs/--no-pickled-graphs",
        help="Also run graphs shipped by value through the store. This executes code read "
        "from the store: enable it only if the database is as trusted as this machine "
        "[TREADLE_ALLOW_PICKLED_GRAPHS].",
    ),
    max_handbacks: int | None = typer.Option(
        None, "--max-handbacks", min=0,
        help="Fail a run handed back to the queue more often than this without finishing "
        "(drains, store failures) [TREADLE_RUN_MAX_HANDBACKS].",
    ),
    max_abandoned_threads: int | None = typer.Option(
        None, "--max-abandoned-threads", min=1,
        help="Recycle the worker (exit code 75) once this many sync node bodies are abandoned "
        "still running by cancelled or timed-out runs [TREADLE_MAX_ABANDONED_THREADS].",
    ),
    name: str | None = typer.Option(None, "--name", help="Worker name in leases and logs."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535,
        help="Serve /healthz, /readyz and /metrics on this port (on TREADLE_HOST) "
        "[TREADLE_WORKER_PORT].",
    ),
    run_timeout: float | None = typer.Option(
        None, "--run-timeout", min=0,
        help="Default longest run in seconds (runs without their own run_timeout); 0: no "
        "limit [TREADLE_RUN_TIMEOUT].",
    ),
    log_format: str | None = _LOG_FORMAT_OPTION,
    log_level: str | None = _LOG_LEVEL_OPTION,
    trace_exporter: str | None = _TRACE_EXPORTER_OPTION,
) -> None:
    """Claim and execute queued runs and remote node tasks until SIGTERM (then drain)."""
    from treadle.cluster.worker import Worker
    from treadle.graphs.registry import parse_graph_args
    from treadle.server.run_hooks import api_hooks
    from treadle.store import serde_policy

    settings = _settings(
        store=store, worker_concurrency=concurrency, worker_task_slots=task_slots,
        worker_max_rss_mb=max_rss_mb, worker_max_loop_lag=max_loop_lag,
        lease_ttl=lease_ttl, drain_timeout=drain_timeout, poll_interval=poll_interval,
        max_worker_losses=max_worker_losses, sweep_interval=sweep_interval,
        allow_pickled_graphs=allow_pickled_graphs, log_format=log_format, log_level=log_level,
        trace_exporter=trace_exporter, worker_port=port, run_timeout=run_timeout,
        max_abandoned_threads=max_abandoned_threads, run_max_handbacks=max_handbacks,
    )
    from treadle.cli.parent_watch import follow_parent
    from treadle.logs import bind
    from treadle.tracing import shutdown_tracing

    setup_telemetry(settings, "treadle-worker", auto_format="json")
    loaded = parse_graph_args(graphs or [], config)  # after set-up: its warnings are logged
    refs = loaded.refs
    serde_policy.configure(loaded.serde)  # its checkpointer.serde, before graphs load
    if loaded.encryption:  # langgraph.json "encryption": this worker opens what the API seals
        settings = settings.model_copy(update={"encryption": loaded.encryption})
    if not refs and not settings.allow_pickled_graphs:
        raise ConfigError(
            "this worker would serve nothing: name graphs (REF, name=REF or --graphs "
            "langgraph.json) or pass --allow-pickled-graphs"
        )
    from treadle.graphs.store_index import load_index

    memory_index = load_index(loaded.store_index, loaded.source, encrypted=bool(
        settings.encryption or settings.encryption_keys))
    from treadle.server.webhook_policy import WebhookPolicy

    webhooks = WebhookPolicy.from_config(loaded.webhooks, loaded.source,
                                         disabled=loaded.http.disable_webhooks)
    w = Worker(settings, refs, name=name, port=settings.worker_port,  # the API's semantics
               memory_ttl=loaded.store_ttl, hooks=api_hooks(webhooks))
    bind(worker=w.name)
    follow_parent(draining=lambda: w.stopping)  # started by `treadle serve`: drain when it dies
    try:
        if not w.connect():
            return
        w.store.item_index = memory_index  # langgraph.json store.index, for the graphs' store
        served = w.load()
        if refs and not served and not settings.allow_pickled_graphs:
            raise ConfigError("no graph could be loaded (see the errors above); nothing to serve")
        logging.getLogger("treadle.worker").info("store %s", redact(settings.store))
        _run(w)
    finally:
        w.close()
        shutdown_tracing()
        _exit_past_abandoned_threads(w.exit_code)
    if w.exit_code:
        raise typer.Exit(w.exit_code)


def _run(w: Worker) -> None:
    """``asyncio.run(w.run())`` without waiting for the default executor's threads on the
    way out (a body stuck in one must not hold the process)."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(w.run())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()  # shuts the default executor down without waiting


def _exit_past_abandoned_threads(code: int) -> None:
    """With abandoned node threads still running, the interpreter would wait for them
    at exit (forever, for a body that blocks): leave now, everything else is closed."""
    import os
    import sys

    from treadle.runtime.node_threads import abandoned_threads

    if abandoned_threads():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
