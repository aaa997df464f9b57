"""``treadle dev`` and ``treadle serve``: LangGraph Platform's HTTP API on treadle."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from treadle.cli._app import app
from treadle.cli._output import _STORE_OPTION, _settings
from treadle.cli._telemetry import (
    _LOG_FORMAT_OPTION,
    _LOG_LEVEL_OPTION,
    _TRACE_EXPORTER_OPTION,
    setup_telemetry,
    telemetry_env,
)
from treadle.errors import ConfigError
from treadle.langgraph_json import Loaded
from treadle.store.urls import redact

if TYPE_CHECKING:
    from treadle.config import Settings

_CONFIG_OPTION = typer.Option(
    "langgraph.json", "--config", "-c", help="The langgraph.json whose graphs to serve."
)
_HOST_OPTION = typer.Option(None, "--host", help="Address to listen on [TREADLE_HOST].")
_PORT_OPTION = typer.Option(None, "--port", "-p", help="Port to listen on [TREADLE_PORT].")


def _load(config: str) -> Loaded:
    from treadle.langgraph_json import load

    if not Path(config).is_file():
        raise ConfigError(f"{config} not found: pass --config path/to/langgraph.json")
    loaded = load(config)
    refs = loaded.refs
    # Fail before listening, in one line, rather than serve a deployment missing a graph.
    from treadle.errors import GraphLoadError
    from treadle.graphs.refs import load_graph

    for name, ref in refs.items():
        try:
            load_graph(ref)
        except GraphLoadError as exc:
            raise ConfigError(f"graph {name!r} of {config} cannot be loaded: {exc}") from exc
    return loaded


def _bind(settings: object) -> socket.socket:
    """The API's port, bound before anything starts: one line when it is in use."""
    from treadle import listen

    return listen.bind(settings.host, settings.port,  # type: ignore[attr-defined]
                       option="--port / TREADLE_PORT")


def _serve(settings: Settings, sock: socket.socket, loaded: Loaded, *, in_process_worker: bool,
           log_level: str) -> None:
    from treadle.server import drain
    from treadle.server.app import create_app
    from treadle.store import shared

    application = create_app(settings, loaded.refs,
                             in_process_worker=in_process_worker,
                             langgraph=loaded)
    # Open the store before listening: an unusable one (unreachable, or missing migrations
    # with TREADLE_AUTO_MIGRATE off) stops start-up in one line; the app shares this store.
    shared.acquire(settings.store, settings)
    try:
        # On SIGTERM: /readyz fails at once, the API serves on for shutdown_delay seconds.
        drain.run(application, sock=sock,
                  shutdown_delay=settings.shutdown_delay,
                  host=settings.host, port=settings.port,
                  log_level=log_level, access_log=False, timeout_graceful_shutdown=5,
                  log_config=None,  # uvicorn's loggers go through treadle's (logs.py)
                  lifespan="on")
    finally:
        shared.release(settings.store)


def _logging(settings: object, *, auto_format: str) -> None:
    setup_telemetry(settings, "treadle-api", auto_format=auto_format)


@app.command(short_help="The API and a worker in one process (SQLite by default).")
def dev(
    config: str = _CONFIG_OPTION,
    store: str | None = _STORE_OPTION,
    host: str | None = _HOST_OPTION,
    port: int | None = _PORT_OPTION,
    concurrency: int | None = typer.Option(
        None, "--concurrency", min=1, help="Runs executed at once [TREADLE_WORKER_CONCURRENCY]."
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
    """One process: the API, an in-process worker, an embedded SQLite store by default."""
    settings = _settings(store=store, host=host, port=port, worker_concurrency=concurrency,
                         run_timeout=run_timeout,
                         log_format=log_format, log_level=log_level,
                         trace_exporter=trace_exporter)
    with _bind(settings) as sock:
        _logging(settings, auto_format="console")  # before reading: its warnings are logged
        loaded = _load(config)
        logging.getLogger("treadle.server").info(
            "treadle dev: %s on http://%s:%d (store %s)", ", ".join(loaded.refs), settings.host,
            settings.port, redact(settings.store))
        _serve(settings, sock, loaded, in_process_worker=True, log_level="info")


@app.command(short_help="The production server: the API and --workers processes.")
def serve(
    config: str = _CONFIG_OPTION,
    store: str | None = _STORE_OPTION,
    host: str | None = _HOST_OPTION,
    port: int | None = _PORT_OPTION,
    workers: int = typer.Option(
        1, "--workers", min=0,
        help="`treadle worker` processes to start beside the API (0: API only; scale "
        "workers separately).",
    ),
    no_workers: bool = typer.Option(False, "--no-workers", help="Same as --workers 0."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", min=1,
        help="Runs each worker executes at once [TREADLE_WORKER_CONCURRENCY].",
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
    """The production server: the API, plus --workers worker processes on the same store."""
    settings = _settings(store=store, host=host, port=port, worker_concurrency=concurrency,
                         run_timeout=run_timeout,
                         log_format=log_format, log_level=log_level,
                         trace_exporter=trace_exporter)
    with _bind(settings) as sock:  # before the worker processes start
        _serve_with_workers(settings, sock, config, 0 if no_workers else workers,
                            concurrency, run_timeout)


def _serve_with_workers(settings: Any, sock: socket.socket, config: str, count: int,
                        concurrency: int | None, run_timeout: float | None) -> None:
    _logging(settings, auto_format="json")  # before reading: its warnings are logged
    loaded = _load(config)
    children: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "TREADLE_STORE": settings.store, **telemetry_env(settings)}
    if concurrency:
        env["TREADLE_WORKER_CONCURRENCY"] = str(concurrency)
    if run_timeout is not None:
        env["TREADLE_RUN_TIMEOUT"] = str(run_timeout)
    try:
        if settings.worker_port is not None:  # their endpoints listen where the API does
            env["TREADLE_HOST"] = settings.host
        for i in range(count):
            # Worker i serves its probes and metrics on worker_port + i.
            endpoint = [] if settings.worker_port is None else [
                "--port", str(settings.worker_port + i if settings.worker_port else 0)]
            children.append(subprocess.Popen(
                [sys.executable, "-m", "treadle", "worker", "--config", config, *endpoint],
                env=env))
        logging.getLogger("treadle.server").info(
            "treadle serve: %s on http://%s:%d with %d worker process(es) (store %s)",
            ", ".join(loaded.refs), settings.host, settings.port, count,
            redact(settings.store))
        _serve(settings, sock, loaded, in_process_worker=False, log_level="warning")
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=settings.drain_timeout + 5)
            except subprocess.TimeoutExpired:
                child.kill()
