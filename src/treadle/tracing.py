"""OpenTelemetry tracing: one trace per run, a span per node task, across workers.

Spans (tracer ``treadle``; attributes are prefixed ``treadle.``):

* ``treadle.run.enqueue`` — the caller queueing a run (HTTP API or Python client). Its
  W3C context is stored in the run's payload (key ``trace``), so every attempt of the
  run joins this trace, on whichever worker it runs.
* ``treadle.run`` — one attempt of the run on a worker (a child of the enqueue span, or
  the root of a new trace for a run queued without one).
* ``treadle.node <name>`` — one attempt of a node task, wherever its body runs.
* ``treadle.task <name>`` — a remote node task on the worker that executes it: a child
  of the orchestrating worker's node span, whose context travels in the task record.

Nothing is installed unless asked (``trace_exporter``) or done by the application:
without a TracerProvider every helper here returns at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import ProxyTracerProvider, Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = [
    "TRACE_KEY",
    "attached",
    "carrier",
    "configure_tracing",
    "enabled",
    "record_error",
    "set_attributes",
    "shutdown_tracing",
    "span",
]

#: Payload key (runs and tasks) holding the W3C context (``traceparent``, ``tracestate``).
TRACE_KEY = "trace"

_tracer = trace.get_tracer("treadle")
_propagator = TraceContextTextMapPropagator()
_installed: Any = None  # the TracerProvider configure_tracing installed, if any
_enabled = False
_lock = threading.Lock()
_CURRENT: Any = object()  # span(parent=...) default: the current context
_KINDS = {"internal": SpanKind.INTERNAL, "producer": SpanKind.PRODUCER,
          "consumer": SpanKind.CONSUMER}


def enabled() -> bool:
    """True when spans are recorded somewhere (a TracerProvider is installed)."""
    global _enabled
    if not _enabled:  # a global provider is set once and for all: remember a yes
        _enabled = not isinstance(trace.get_tracer_provider(),
                                  (ProxyTracerProvider, trace.NoOpTracerProvider))
    return _enabled


def configure_tracing(settings: Any, service_name: str) -> bool:
    """Install a TracerProvider exporting to ``settings.trace_exporter`` (``otlp``: OTLP
    over HTTP to ``settings.otlp_endpoint`` or the standard ``OTEL_EXPORTER_OTLP_*``
    variables; ``console``: stdout). ``none`` installs nothing. A provider the
    application installed first is left alone and used. True when one was installed."""
    global _installed
    kind = getattr(settings, "trace_exporter", "none")
    with _lock:
        if kind == "none" or enabled():
            return False
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

        exporter: SpanExporter
        if kind == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = getattr(settings, "otlp_endpoint", None)
            if endpoint and not endpoint.rstrip("/").endswith("/v1/traces"):
                endpoint = endpoint.rstrip("/") + "/v1/traces"
            exporter = OTLPSpanExporter(endpoint=endpoint or None)
        else:
            exporter = ConsoleSpanExporter()
        # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES win over our default name.
        attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _installed = provider
        return True


def shutdown_tracing() -> None:
    """Flush and stop the provider configure_tracing installed (not an application's)."""
    global _installed
    with _lock:
        provider, _installed = _installed, None
    if provider is not None:
        provider.shutdown()


def carrier() -> dict[str, str] | None:
    """The current span's context as W3C headers, to store with a run or task; None
    when tracing is off or no span is active."""
    if not enabled():
        return None
    headers: dict[str, str] = {}
    _propagator.inject(headers)
    return headers or None


@contextlib.contextmanager
def attached(headers: Mapping[str, str]) -> Iterator[None]:
    """Inside the block, the current context is the one ``headers`` (W3C ``traceparent``,
    ``tracestate``) carry: spans started there continue the caller's trace. Does nothing
    when tracing is off or the headers hold no context."""
    if not enabled() or not headers.get("traceparent"):
        yield
        return
    from opentelemetry import context as otel_context

    token = otel_context.attach(_propagator.extract(dict(headers)))
    try:
        yield
    finally:
        otel_context.detach(token)


def _parent(headers: Any) -> Context:
    """The context stored by :func:`carrier`; an empty one (a new trace) without it."""
    if isinstance(headers, Mapping) and headers:
        return _propagator.extract({str(k): str(v) for k, v in headers.items()})
    return Context()


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, *, parent: Any = _CURRENT,
         kind: str = "internal",
         not_errors: tuple[type[BaseException], ...] = ()) -> Iterator[Span | None]:
    """A span around the block, current inside it; None when tracing is off.

    ``parent``: headers from :func:`carrier` (missing or empty: a new trace); by default
    the current span. ``kind``: internal, producer (queueing work) or consumer
    (executing queued work). An exception leaving the block marks the span as failed, unless
    it is one of ``not_errors`` (an interrupt is not a failure)."""
    if not enabled():
        yield None
        return
    context = None if parent is _CURRENT else _parent(parent)
    attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
    with _tracer.start_as_current_span(name, context=context, kind=_KINDS[kind], attributes=attrs,
                                       record_exception=False,
                                       set_status_on_exception=False) as current:
        try:
            yield current
        except Exception as exc:
            if not isinstance(exc, not_errors):
                _fail(current, exc)
            raise


def _fail(current: Span, exc: BaseException) -> None:
    current.record_exception(exc)
    current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def record_error(exc: BaseException) -> None:
    """Mark the current span as failed with ``exc`` (an error handled, not raised)."""
    current = trace.get_current_span()
    if current.is_recording():
        _fail(current, exc)


def set_attributes(attributes: Mapping[str, Any], *, error: str | None = None) -> None:
    """Add attributes to the current span; ``error`` also marks it as failed."""
    current = trace.get_current_span()
    if not current.is_recording():
        return
    current.set_attributes({k: v for k, v in attributes.items() if v is not None})
    if error is not None:
        current.set_status(Status(StatusCode.ERROR, error))
