"""The graphs a server serves (from ``langgraph.json``), their schemas and default assistants.

Each graph gets a default assistant whose id is derived from the graph's name the way
LangGraph Platform derives it, so ``assistant_id="agent"`` and the default assistant's
UUID both work, as clients of ``langgraph dev`` expect.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from treadle.config import Settings
from treadle.errors import ConflictError, NotFoundError
from treadle.graphs.registry import REF_PREFIX, GraphRegistry
from treadle.runtime import TreadleGraph
from treadle.store import Store

__all__ = ["ServerGraphs", "default_assistant_id"]

log = logging.getLogger("treadle.server")

# The namespace LangGraph Platform uses for default assistant ids (uuid5 of the graph id).
_NAMESPACE_GRAPH = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")


def default_assistant_id(graph_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE_GRAPH, graph_id))


class ServerGraphs:
    def __init__(self, store: Store, refs: dict[str, str], settings: Settings, *,
                 descriptions: dict[str, str] | None = None,
                 memory_ttl: dict[str, Any] | None = None) -> None:
        self.store = store
        self.refs = refs
        self.descriptions = descriptions or {}
        self.registry = GraphRegistry(store, refs, allow_pickled=settings.allow_pickled_graphs,
                                      settings=settings, memory_ttl=memory_ttl)

    def load(self) -> None:
        self.registry.load_all()
        for gid, graph in self.registry.graphs.items():
            graph.graph_id = gid.removeprefix(REF_PREFIX)
        for gid, reason in self.registry.failed.items():
            log.error("graph %s is not served: %s", gid.removeprefix(REF_PREFIX), reason)

    @property
    def names(self) -> list[str]:
        return [g.removeprefix(REF_PREFIX) for g in self.registry.graph_ids]

    def get(self, graph_id: str) -> TreadleGraph:
        graph = self.registry.graphs.get(REF_PREFIX + graph_id)
        if graph is None:
            raise NotFoundError(f"graph {graph_id!r} is not served here "
                                f"(served: {', '.join(self.names) or 'none'})")
        return graph

    @asynccontextmanager
    async def open(self, graph_id: str, access_context: str,
                   config: dict[str, Any] | None = None) -> AsyncIterator[TreadleGraph]:
        """The graph for one use (``access_context``: ``"threads.read"``,
        ``"threads.update"``, ``"assistants.read"``): a graph factory is called again
        for it, as LangGraph Platform does; 404 unless this deployment serves it."""
        self.get(graph_id)
        async with self.registry.open(REF_PREFIX + graph_id, config, access_context) as graph:
            yield graph

    def has(self, graph_id: str) -> bool:
        return REF_PREFIX + graph_id in self.registry.graphs

    def ensure_default_assistants(self) -> None:
        from treadle.store.assistant_records import Assistant

        for name in self.names:
            description = self.descriptions.get(name)
            a = Assistant(assistant_id=default_assistant_id(name), graph_id=name, config={},
                          context={}, metadata={"created_by": "system"}, name=name,
                          description=description, version=1, created_at=0.0, updated_at=0.0)
            try:
                stored = self.store.put_assistant(a, if_exists="do_nothing")
            except ConflictError:
                continue
            if description is not None and stored.description != description:
                # langgraph.json's description changed since the assistant was made.
                self.store.patch_assistant(a.assistant_id, description=description)

    async def schemas(self, graph_id: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
        async with self.open(graph_id, "assistants.read", config) as graph:
            return {"graph_id": graph_id, **_schemas(graph.graph, graph_id)}

    def close(self) -> None:
        self.registry.close()


def _schemas(graph: Any, graph_id: str | None = None) -> dict[str, Any]:
    """The graph's JSON schemas; one LangGraph cannot render is null, and the reason is
    logged (one line naming the graph, ``graph_id`` or else its name; the traceback at
    debug level)."""
    graph_id = graph_id or str(getattr(graph, "name", None) or type(graph).__name__)

    def attempt(name: str, make: Any) -> Any:
        try:
            return make()
        except Exception as exc:  # noqa: BLE001 - a schema LangGraph cannot render is null
            first = (str(exc).strip().splitlines() or [""])[0]
            log.warning("graph %s: its %s is null: %s: %s", graph_id, name,
                        type(exc).__name__, first)
            log.debug("graph %s: rendering its %s failed", graph_id, name, exc_info=True)
            return None

    def state_schema() -> Any:
        schema = getattr(getattr(graph, "builder", None), "state_schema", None)
        if schema is None:
            return None
        from pydantic import TypeAdapter

        return TypeAdapter(schema).json_schema()

    return {
        "input_schema": attempt("input_schema", lambda: graph.get_input_jsonschema()),
        "output_schema": attempt("output_schema", lambda: graph.get_output_jsonschema()),
        "state_schema": attempt("state_schema", state_schema),
        "config_schema": attempt("config_schema", lambda: graph.get_config_jsonschema()),
        "context_schema": attempt("context_schema", lambda: graph.get_context_jsonschema()),
    }
