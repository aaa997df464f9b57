"""Executing one run attempt's graph on a worker: invoke it, or stream it into the store.

A run nobody streams is ``ainvoke``d. A streamed run's chunks are recorded as stream
events (``treadle.cluster.events``), fenced by the attempt's epoch; its result is
the last root ``values`` chunk. Stream mode ``events`` uses LangChain's
``astream_events`` (v2), with the other modes taken from the root graph's
``on_chain_stream`` events.
"""

from __future__ import annotations

from typing import Any

from treadle.cluster.events import EventWriter
from treadle.cluster.spec import RunSpec
from treadle.errors import InputError
from treadle.store import Store
from treadle.store.queue import RunRow

__all__ = ["drive", "validate_input"]


async def drive(store: Store, row: RunRow, spec: RunSpec, graph: Any, input: Any,
                config: dict[str, Any], kwargs: dict[str, Any]) -> Any:
    """Run the attempt to its end; return the run's result."""
    if not row.stream:
        # Stream options of a run nobody streams would change what ainvoke returns.
        kwargs = {k: v for k, v in kwargs.items() if k not in ("stream_mode", "subgraphs")}
        return await graph.ainvoke(input, config, **kwargs)
    events = EventWriter(store, row.run_id, row.epoch, row.thread_id)
    await events.start()
    last_values = None
    try:
        async for chunk in _chunks(graph, input, config, kwargs, spec, events):
            events.add(chunk)
            last_values = _root_values(chunk, last_values)
        events.add_end()
    finally:
        await events.flush()
    return last_values


async def _chunks(graph: Any, input: Any, config: dict[str, Any], kwargs: dict[str, Any],
                  spec: RunSpec, events: EventWriter) -> Any:
    if "events" not in (spec.stream_mode or ()):
        async for chunk in graph.astream(input, config, **kwargs):
            yield chunk
        return
    from treadle.jsonable import to_json

    subgraphs = bool(kwargs.get("subgraphs"))
    async for ev in graph.astream_events(input, config, version="v2", **kwargs):
        doc = to_json(ev)
        events.add(((), "events", doc) if subgraphs else ("events", doc))
        if ev.get("event") == "on_chain_stream" and not ev.get("parent_ids"):
            chunk = ev.get("data", {}).get("chunk")
            if isinstance(chunk, tuple):
                yield chunk


def _root_values(chunk: Any, last: Any) -> Any:
    """The chunk's data if it is a root "values" chunk, else ``last``."""
    if isinstance(chunk, tuple):
        if len(chunk) == 3 and chunk[0] == () and chunk[1] == "values":
            return chunk[2]
        if len(chunk) == 2 and chunk[0] == "values":
            return chunk[1]
    return last


def validate_input(graph: Any, input: Any) -> None:
    """Check a run's input against the graph's pydantic input schema before anything is
    written (LangGraph validates only after it has saved the input checkpoint)."""
    from pydantic import BaseModel, ValidationError

    schema = getattr(graph.graph, "builder", None)
    schema = getattr(schema, "input_schema", None) if schema is not None else None
    if not isinstance(input, dict) or not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return
    try:
        schema.model_validate(input)
    except ValidationError as exc:
        raise InputError(f"the run's input does not fit the graph's input schema: {exc}") from exc
