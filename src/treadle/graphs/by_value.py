"""Graphs shipped by value: for scripts and notebooks, whose graphs have no importable name.

The caller pickles the graph's ``StateGraph`` builder with cloudpickle (functions
defined in ``__main__`` or a notebook travel as code) and stores it under its
content hash; a worker started with ``--allow-pickled-graphs`` loads it from there.

Trust model: unpickling runs code. A worker that accepts pickled graphs runs any
code that anyone able to write to the store puts there, so enable it only where
the database is as trusted as the workers' own code (the default is off, and such
workers never claim pickled runs). Workers without it serve only graphs they load
by reference (``REF`` / ``langgraph.json``).
"""

from __future__ import annotations

import hashlib
from typing import Any

from langgraph.graph.state import StateGraph

from treadle.errors import ConfigError, GraphLoadError

__all__ = ["PICKLE_PREFIX", "load", "pack"]

PICKLE_PREFIX = "pickle:"


def pack(builder: Any, compile_kwargs: dict[str, Any], nodes: dict[str, Any]) -> tuple[str, bytes]:
    """(graph_id, blob) for a ``StateGraph`` builder and how it was compiled."""
    import cloudpickle

    if not isinstance(builder, StateGraph):
        raise ConfigError(
            "runtime='distributed' ships a graph by value only when it was built with "
            "StateGraph; for other graphs pass graph_id= (a name workers load by reference)"
        )
    try:
        blob = cloudpickle.dumps({"builder": builder, "compile": compile_kwargs, "nodes": nodes})
    except Exception as exc:
        raise ConfigError(
            f"cannot ship this graph to workers by value ({type(exc).__name__}: {exc}); "
            "pass graph_id= and start workers with the graph's reference"
        ) from exc
    return PICKLE_PREFIX + hashlib.sha256(blob).hexdigest(), blob


def load(graph_id: str, blob: bytes) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(builder, compile kwargs, node options) from a stored blob."""
    import cloudpickle

    if PICKLE_PREFIX + hashlib.sha256(blob).hexdigest() != graph_id:
        raise GraphLoadError(f"graph {graph_id} does not match its content hash; refusing it")
    try:
        doc = cloudpickle.loads(blob)
    except Exception as exc:
        raise GraphLoadError(
            f"cannot load graph {graph_id} ({type(exc).__name__}: {exc}); "
            "are the caller's and the worker's Python and package versions the same?"
        ) from exc
    return doc["builder"], dict(doc["compile"]), dict(doc["nodes"])
