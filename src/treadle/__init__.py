"""treadle: a production runtime for LangGraph — durable, recoverable, parallel.

Change one line: ``graph = builder.compile()`` becomes ``graph = treadle.compile(builder)``.
"""

from treadle.config import Settings
from treadle.errors import (
    AccessFilterError,
    CircuitOpenError,
    ConfigError,
    ConflictError,
    EncryptionError,
    FencedWriteError,
    GraphLoadError,
    IdempotencyKeyError,
    InputError,
    MigrationsPendingError,
    NodeError,
    NodeTimeoutError,
    NotFoundError,
    PriorityError,
    QueueTimeoutError,
    RefusedConfigError,
    RemoteNodeError,
    RunFailedError,
    RunSpecVersionError,
    SandboxLimitError,
    SandboxUnavailableError,
    SchemaError,
    StoreDataError,
    StoreError,
    StoreUnavailableError,
    TaskCrashedError,
    ThreadBusyError,
    TreadleError,
    UsageError,
    WaitTimeoutError,
    WebhookRefusedError,
)
from treadle.runtime import TreadleGraph, compile
from treadle.runtime import distributed as _distributed
from treadle.runtime.idempotency import idempotency_key
from treadle.runtime.policies import is_transient
from treadle.store import Store, open_store
from treadle.store.checkpointer import TreadleSaver
from treadle.store.memory import TreadleStore

__version__ = "0.1.0"


def _cluster_runtime() -> _distributed.Distributed:
    # runtime="distributed" runs on the cluster; imported on first use only.
    from treadle.cluster import client

    return client  # type: ignore[return-value]


_distributed.provide(_cluster_runtime)

__all__ = [
    "AccessFilterError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "EncryptionError",
    "FencedWriteError",
    "GraphLoadError",
    "IdempotencyKeyError",
    "InputError",
    "MigrationsPendingError",
    "NodeError",
    "NodeTimeoutError",
    "NotFoundError",
    "PriorityError",
    "QueueTimeoutError",
    "RefusedConfigError",
    "RemoteNodeError",
    "RunFailedError",
    "RunSpecVersionError",
    "SandboxLimitError",
    "SandboxUnavailableError",
    "SchemaError",
    "Settings",
    "Store",
    "StoreDataError",
    "StoreError",
    "StoreUnavailableError",
    "TaskCrashedError",
    "ThreadBusyError",
    "TreadleError",
    "TreadleGraph",
    "TreadleSaver",
    "TreadleStore",
    "UsageError",
    "WaitTimeoutError",
    "WebhookRefusedError",
    "__version__",
    "compile",
    "idempotency_key",
    "is_transient",
    "open_store",
]
