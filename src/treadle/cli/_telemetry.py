"""Log and trace options shared by the long-running commands (dev, serve, worker)."""

from __future__ import annotations

from typing import Any

import typer

_LOG_FORMAT_OPTION = typer.Option(
    None, "--log-format", show_default=False,
    help="Log lines as json (one object per line) or console (readable); auto: console in "
    "`treadle dev`, json elsewhere [TREADLE_LOG_FORMAT].",
)
_LOG_LEVEL_OPTION = typer.Option(
    None, "--log-level", show_default=False,
    help="Lowest level logged: debug, info, warning or error [TREADLE_LOG_LEVEL].",
)
_TRACE_EXPORTER_OPTION = typer.Option(
    None, "--trace-exporter", show_default=False,
    help="Where OpenTelemetry spans go: none, otlp (OTLP over HTTP to TREADLE_OTLP_ENDPOINT "
    "or the OTEL_EXPORTER_OTLP_* variables) or console [TREADLE_TRACE_EXPORTER].",
)


def telemetry_env(settings: Any) -> dict[str, str]:
    """The log and trace settings as TREADLE_* variables, for child processes."""
    env = {"TREADLE_LOG_FORMAT": settings.log_format, "TREADLE_LOG_LEVEL": settings.log_level,
           "TREADLE_TRACE_EXPORTER": settings.trace_exporter}
    if settings.otlp_endpoint:
        env["TREADLE_OTLP_ENDPOINT"] = settings.otlp_endpoint
    return env


def setup_telemetry(settings: Any, service_name: str, *, auto_format: str) -> None:
    """Configure logging (``auto_format`` when the format is auto) and tracing."""
    from treadle.cli._app import _STATE
    from treadle.logs import configure_logging
    from treadle.tracing import configure_tracing

    configure_logging(settings.log_format, settings.log_level, auto=auto_format,
                      debug=_STATE.debug)
    configure_tracing(settings, service_name)
