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
from treadle.cli._worker_options import _CONCURRENCY_OPTION, _MAX_LAG_OPTION, _MAX_RSS_OPTION
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
_AUTH_OPTION = typer.Option(
    None, "--auth", show_default=False,
    help="none, or builtin (API keys and JWTs) [TREADLE_AUTH]; a custom langgraph_sdk.Auth "
    'comes from langgraph.json\'s "auth".')
_DEFAULT_DENY_OPTION = typer.Option(
    None, "--auth-default-deny/--no-auth-default-deny", show_default=False,
    help="Refuse what no auth handler covers; default: on for serve, off for dev "
    "[TREADLE_AUTH_DEFAULT_DENY].")
_PUBLIC_INFO_OPTION = typer.Option(
    None, "--public-info/--no-public-info", show_default=False,
    help="Serve /info without credentials (default: yes) [TREADLE_PUBLIC_INFO].")
_PUBLIC_METRICS_OPTION = typer.Option(
    None, "--public-metrics/--no-public-metrics", show_default=False,
    help="Serve /metrics without credentials (default: yes) [TREADLE_PUBLIC_METRICS].")
_CONSOLE_OPTION = typer.Option(
    None, "--console/--no-console", show_default=False,
    help="Serve the web console (default: yes) [TREADLE_CONSOLE].")
_CONSOLE_PATH_OPTION = typer.Option(
    None, "--console-path", help="Path of the web console (default: /console) "
    "[TREADLE_CONSOLE_PATH].")
_OPERATOR_TENANTS_OPTION = typer.Option(
    None, "--operator-tenants", help="Tenants whose admins may read the cluster-wide views "
    "(/operations), comma-separated [TREADLE_OPERATOR_TENANTS].")
_ALLOWED_HOSTS_OPTION = typer.Option(
    None, "--allowed-hosts",
    help="Host names the API answers, comma-separated (*.domain: its subdomains; *: any) "
    "[TREADLE_ALLOWED_HOSTS]. Default: loopback names for dev, any for serve.",
)


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
    if loaded.auth is not None:
        from treadle.auth.loading import load_auth

        load_auth(loaded.auth, config)
    if loaded.http.app is not None:  # langgraph.json's http.app: checked before listening
        from treadle.server.custom_app import load_custom_app

        load_custom_app(loaded.http.app, config)
    return loaded


def _console_line(settings: Settings, loaded: Loaded) -> str:
    """Where the web console is, for the start-up line ("" when it is off)."""
    if not settings.console:
        return ""
    host = "localhost" if settings.host in ("0.0.0.0", "::") else settings.host
    prefix = loaded.http.mount_prefix or ""
    return f"; console: http://{host}:{settings.port}{prefix}{settings.console_path}/"


def _bind(settings: object) -> socket.socket:
    """The API's port, bound before anything starts: one line when it is in use."""
    from treadle import listen

    return listen.bind(settings.host, settings.port,  # type: ignore[attr-defined]
                       option="--port / TREADLE_PORT")


def _serve(settings: Settings, sock: socket.socket, loaded: Loaded, *, in_process_worker: bool,
           log_level: str) -> None:
    from treadle.server import drain
    from treadle.server.app import create_app
    from treadle.server.host_check import LOOPBACK_HOSTS, parse_hosts
    from treadle.store import shared

    if loaded.encryption:  # langgraph.json "encryption": the store (and its workers) use it
        settings = settings.model_copy(update={"encryption": loaded.encryption})
    # treadle dev answers loopback names only unless told (DNS rebinding); serve: any.
    hosts = parse_hosts(settings.allowed_hosts)
    if in_process_worker and settings.allowed_hosts is None:
        hosts = LOOPBACK_HOSTS
    application = create_app(settings, loaded.refs,
                             in_process_worker=in_process_worker,
                             langgraph=loaded, allowed_hosts=hosts)
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
    allowed_hosts: str | None = _ALLOWED_HOSTS_OPTION,
    concurrency: int | None = _CONCURRENCY_OPTION,
    max_rss_mb: float | None = _MAX_RSS_OPTION,
    max_loop_lag: float | None = _MAX_LAG_OPTION,
    run_timeout: float | None = typer.Option(
        None, "--run-timeout", min=0,
        help="Default longest run in seconds (runs without their own run_timeout); 0: no "
        "limit [TREADLE_RUN_TIMEOUT].",
    ),
    log_format: str | None = _LOG_FORMAT_OPTION,
    log_level: str | None = _LOG_LEVEL_OPTION,
    trace_exporter: str | None = _TRACE_EXPORTER_OPTION,
    auth: str | None = _AUTH_OPTION,
    auth_default_deny: bool | None = _DEFAULT_DENY_OPTION,
    public_info: bool | None = _PUBLIC_INFO_OPTION,
    public_metrics: bool | None = _PUBLIC_METRICS_OPTION,
    console: bool | None = _CONSOLE_OPTION,
    console_path: str | None = _CONSOLE_PATH_OPTION,
    operator_tenants: str | None = _OPERATOR_TENANTS_OPTION,
) -> None:
    """One process: the API, an in-process worker, an embedded SQLite store by default."""
    settings = _settings(store=store, host=host, port=port, worker_concurrency=concurrency,
                         worker_max_rss_mb=max_rss_mb, worker_max_loop_lag=max_loop_lag,
                         run_timeout=run_timeout, allowed_hosts=allowed_hosts,
                         auth=auth, auth_default_deny=auth_default_deny,
                         public_info=public_info, public_metrics=public_metrics,
                         console=console, console_path=console_path,
                         operator_tenants=operator_tenants,
                         log_format=log_format, log_level=log_level,
                         trace_exporter=trace_exporter)
    with _bind(settings) as sock:
        _logging(settings, auto_format="console")  # before reading: its warnings are logged
        loaded = _load(config)
        logging.getLogger("treadle.server").info(
            "treadle dev: %s on http://%s:%d (store %s)%s", ", ".join(loaded.refs), settings.host,
            settings.port, redact(settings.store), _console_line(settings, loaded))
        _serve(settings, sock, loaded, in_process_worker=True, log_level="info")


@app.command(short_help="The production server: the API and --workers processes.")
def serve(
    config: str = _CONFIG_OPTION,
    store: str | None = _STORE_OPTION,
    host: str | None = _HOST_OPTION,
    port: int | None = _PORT_OPTION,
    allowed_hosts: str | None = _ALLOWED_HOSTS_OPTION,
    workers: int = typer.Option(
        1, "--workers", min=0,
        help="`treadle worker` processes to start beside the API (0: API only; scale "
        "workers separately).",
    ),
    no_workers: bool = typer.Option(False, "--no-workers", help="Same as --workers 0."),
    concurrency: int | None = _CONCURRENCY_OPTION,
    max_rss_mb: float | None = _MAX_RSS_OPTION,
    max_loop_lag: float | None = _MAX_LAG_OPTION,
    run_timeout: float | None = typer.Option(
        None, "--run-timeout", min=0,
        help="Default longest run in seconds (runs without their own run_timeout); 0: no "
        "limit [TREADLE_RUN_TIMEOUT].",
    ),
    log_format: str | None = _LOG_FORMAT_OPTION,
    log_level: str | None = _LOG_LEVEL_OPTION,
    trace_exporter: str | None = _TRACE_EXPORTER_OPTION,
    auth: str | None = _AUTH_OPTION,
    auth_default_deny: bool | None = _DEFAULT_DENY_OPTION,
    public_info: bool | None = _PUBLIC_INFO_OPTION,
    public_metrics: bool | None = _PUBLIC_METRICS_OPTION,
    console: bool | None = _CONSOLE_OPTION,
    console_path: str | None = _CONSOLE_PATH_OPTION,
    operator_tenants: str | None = _OPERATOR_TENANTS_OPTION,
) -> None:
    """The production server: the API, plus --workers worker processes on the same store."""
    settings = _settings(store=store, host=host, port=port, worker_concurrency=concurrency,
                         worker_max_rss_mb=max_rss_mb, worker_max_loop_lag=max_loop_lag,
                         run_timeout=run_timeout, allowed_hosts=allowed_hosts,
                         auth=auth, auth_default_deny=auth_default_deny,
                         public_info=public_info, public_metrics=public_metrics,
                         console=console, console_path=console_path,
                         operator_tenants=operator_tenants,
                         log_format=log_format, log_level=log_level,
                         trace_exporter=trace_exporter)
    with _bind(settings) as sock:  # before the worker processes start
        _serve_with_workers(settings, sock, config, 0 if no_workers else workers,
                            concurrency, run_timeout, max_rss_mb, max_loop_lag)


def _serve_with_workers(settings: Any, sock: socket.socket, config: str, count: int,
                        concurrency: int | None, run_timeout: float | None,
                        max_rss_mb: float | None = None,
                        max_loop_lag: float | None = None) -> None:
    _logging(settings, auto_format="json")  # before reading: its warnings are logged
    loaded = _load(config)
    children: list[subprocess.Popen[bytes]] = []
    from treadle.cli.parent_watch import PARENT_ENV

    env = {**os.environ, "TREADLE_STORE": settings.store, **telemetry_env(settings),
           PARENT_ENV: str(os.getpid())}  # the workers stop if this process dies
    if concurrency:
        env["TREADLE_WORKER_CONCURRENCY"] = str(concurrency)
    if run_timeout is not None:
        env["TREADLE_RUN_TIMEOUT"] = str(run_timeout)
    if max_rss_mb is not None:
        env["TREADLE_WORKER_MAX_RSS_MB"] = str(max_rss_mb)
    if max_loop_lag is not None:
        env["TREADLE_WORKER_MAX_LOOP_LAG"] = str(max_loop_lag)
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
            "treadle serve: %s on http://%s:%d with %d worker process(es) (store %s)%s",
            ", ".join(loaded.refs), settings.host, settings.port, count,
            redact(settings.store), _console_line(settings, loaded))
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
