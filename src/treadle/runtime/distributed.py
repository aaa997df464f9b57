"""The runtime's seam to the cluster: what ``runtime="distributed"`` hands a call to.

The runtime (``treadle.runtime``) defines this protocol and never imports the cluster: a
:class:`TreadleGraph` called with ``runtime="distributed"`` gives the whole call to the
implementation :func:`provide` registered. ``treadle/__init__.py`` registers the cluster's
(``treadle.cluster.client``), loaded on first use, so local runs never import it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

from treadle.errors import ConfigError

__all__ = ["Distributed", "distributed", "provide"]


class Distributed(Protocol):
    """Queue a graph call as a cluster run, and give back its outcome or its chunks."""

    def invoke(self, graph: Any, input: Any, config: dict[str, Any] | None,
               kwargs: dict[str, Any]) -> Any: ...

    async def ainvoke(self, graph: Any, input: Any, config: dict[str, Any] | None,
                      kwargs: dict[str, Any]) -> Any: ...

    def stream(self, graph: Any, input: Any, config: dict[str, Any] | None,
               kwargs: dict[str, Any]) -> Iterator[Any]: ...

    def astream(self, graph: Any, input: Any, config: dict[str, Any] | None,
                kwargs: dict[str, Any]) -> AsyncIterator[Any]: ...


_provider: Callable[[], Distributed] | None = None


def provide(factory: Callable[[], Distributed]) -> None:
    """Register what runs ``runtime="distributed"`` calls (``factory`` is called on each
    such call: it may import lazily)."""
    global _provider
    _provider = factory


def distributed() -> Distributed:
    """The registered implementation; ConfigError when there is none."""
    if _provider is None:
        raise ConfigError("runtime='distributed' needs treadle's cluster, and none is "
                          "registered (import treadle to register it)")
    return _provider()
