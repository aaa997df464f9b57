"""OpenTelemetry spans in tests: an in-memory exporter on this process's TracerProvider,
and spans as JSON (what tests/tracing_worker.py writes for a worker process). A module
(not conftest.py) so tests and the wrapper import it by name: ``from spans import ...``."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def memory_exporter(service_name: str = "treadle-tests") -> InMemorySpanExporter:
    """An exporter that keeps every span this process ends from now on. The global
    TracerProvider can be set only once per process: install one, or add to it."""
    from opentelemetry.sdk.resources import Resource

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(
            TracerProvider(resource=Resource.create({"service.name": service_name})))
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another TracerProvider kind is installed"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def span_json(span: ReadableSpan) -> dict[str, Any]:
    ctx = span.get_span_context()
    assert ctx is not None
    return {
        "name": span.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "attributes": dict(span.attributes or {}),
        "events": [e.name for e in span.events],
        "service": (span.resource.attributes or {}).get("service.name"),
    }
