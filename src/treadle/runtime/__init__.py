"""The in-process runtime: ``treadle.compile`` and what a compiled graph runs on.

:mod:`~treadle.runtime.graph` is the :class:`TreadleGraph` (``treadle.compile``);
:mod:`~treadle.runtime.core` what graphs share (settings, store, saver, pools);
:mod:`~treadle.runtime.pools` the worker pools node tasks run in (threads,
:mod:`~treadle.runtime.node_threads`; processes, :mod:`~treadle.runtime.process_pool`);
:mod:`~treadle.runtime.policies` retries, timeouts and breakers;
:mod:`~treadle.runtime.execution` the hook a cluster run attempt hangs on the nodes;
:mod:`~treadle.runtime.idempotency` stable keys for node tasks.
"""

from treadle.runtime.compiler import compile
from treadle.runtime.graph import TreadleGraph, TreadleStateGraph

__all__ = ["TreadleGraph", "TreadleStateGraph", "compile"]
