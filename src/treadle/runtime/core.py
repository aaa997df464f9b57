"""What a treadle graph is made of: its shared core (settings, store, saver, pools)
and its nodes, each wrapped to run through treadle's pools."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

from langgraph.pregel import Pregel

from treadle.config import Settings
from treadle.errors import ConfigError
from treadle.runtime.policies import CircuitBreaker, default_retry_policy
from treadle.runtime.pools import NodeOptions, NodeProxy, Pools
from treadle.store import Store, shared
from treadle.store.checkpointer import TreadleSaver

__all__ = ["GraphCore", "wrap_nodes"]


class GraphCore:
    """What a treadle graph and all its copies (``with_config``, ...) share: its
    settings, treadle store, saver and pools. Released by ``close()`` or once no copy
    is left."""

    def __init__(self, backend: Store, saver: TreadleSaver, settings: Settings) -> None:
        self.settings = settings
        self.backend = backend
        self.saver = saver
        self.pools = Pools(settings)
        self.retry_policy = (default_retry_policy(settings),)
        self.extra_stores: dict[str, tuple[Store, TreadleSaver]] = {}
        self.lock = threading.Lock()
        self.graph_id: str | None = None  # its name for workers (runtime="distributed")
        self.shipped: str | None = None  # its id once shipped to workers by value
        # The graph arguments of a `treadle worker` serving it, when known (`name=REF`,
        # `--graphs langgraph.json`): the hint given when no live worker serves it.
        self.worker_args: str | None = None
        self.finalizer = weakref.finalize(self, _release, self.pools, settings.store,
                                          self.extra_stores)


def wrap_nodes(graph: Pregel[Any, Any, Any, Any], node_options: Mapping[str, Mapping[str, Any]],
          core: GraphCore) -> Pregel[Any, Any, Any, Any]:
    """A copy of ``graph`` whose nodes run through treadle's pools.

    Idempotent: a node that already holds a :class:`NodeProxy` (a graph compiled
    by treadle before) is re-wrapped from its original runnable, never twice.
    """
    unknown = set(node_options) - set(graph.nodes)
    if unknown:
        raise ConfigError(f"nodes={sorted(unknown)} are not nodes of this graph")
    settings = core.settings
    new_nodes = {}
    for name, node in graph.nodes.items():
        bound = node.bound
        inherited: dict[str, Any] = {}
        if isinstance(bound, NodeProxy):
            inherited = {"pool": bound.options.pool, "timeout": bound.options.timeout,
                         "placement": bound.options.placement,
                         "sandbox": bound.options.sandbox}
            bound = bound.bound
        if isinstance(bound, Pregel):
            # A compiled subgraph added as a node: wrap a copy, leave the user's alone.
            sub = wrap_nodes(bound, {}, core)
            new_nodes[name] = node.copy({"bound": sub, "subgraphs": [sub]})
            continue
        if node.subgraphs or name.startswith("__"):
            # A subgraph called from inside a function can only be wrapped in place.
            for inner in node.subgraphs or ():
                if isinstance(inner, Pregel):
                    wrapped = wrap_nodes(inner, {}, core)
                    inner.nodes = wrapped.nodes
                    inner.retry_policy = wrapped.retry_policy
            new_nodes[name] = node.copy({"bound": bound}) if bound is not node.bound else node
            continue
        meta = (node.metadata or {}).get("treadle")
        options = NodeOptions.parse(
            name, {**inherited, **(meta or {}), **node_options.get(name, {})}, settings.node_timeout,
        )
        breaker = CircuitBreaker(name, settings.breaker_threshold, settings.breaker_cooldown)
        proxy = NodeProxy(name, bound, options, core.pools, breaker,
                          # LangGraph's rule: the node's own policy, else the graph's.
                          list(node.retry_policy or core.retry_policy))
        new_nodes[name] = node.copy({"bound": proxy})
    return graph.copy({"nodes": new_nodes, "retry_policy": core.retry_policy})


def _release(pools: Pools, url: str, extra: dict[str, tuple[Store, TreadleSaver]]) -> None:
    pools.close()
    for extra_url in list(extra):
        shared.release(extra_url)
    extra.clear()
    shared.release(url)
