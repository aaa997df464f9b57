"""treadle: a production runtime for LangGraph — durable, recoverable, parallel.

Change one line: ``graph = builder.compile()`` becomes ``graph = treadle.compile(builder)``.
"""

from treadle import distributed as _distributed
from treadle.checkpointer import TreadleSaver
from treadle.config import Settings
from treadle.errors import (
    CircuitOpenError,
    ConfigError,
    FencedWriteError,
    GraphLoadError,
    InputError,
    NodeError,
    NodeTimeoutError,
    SchemaError,
    StoreError,
    StoreUnavailableError,
    TaskCrashedError,
    TreadleError,
)
from treadle.idempotency import idempotency_key
from treadle.policies import is_transient
from treadle.runtime import TreadleGraph, compile
from treadle.store import Store, open_store

__version__ = "0.1.0"


def _cluster_runtime() -> _distributed.Distributed:
    # runtime="distributed" runs on the cluster; imported on first use only.
    from treadle.cluster import client

    return client  # type: ignore[return-value]


_distributed.provide(_cluster_runtime)

__all__ = [
    "CircuitOpenError",
    "ConfigError",
    "FencedWriteError",
    "GraphLoadError",
    "InputError",
    "NodeError",
    "NodeTimeoutError",
    "SchemaError",
    "Settings",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TaskCrashedError",
    "TreadleError",
    "TreadleGraph",
    "TreadleSaver",
    "__version__",
    "compile",
    "idempotency_key",
    "is_transient",
    "open_store",
]
