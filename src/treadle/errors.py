"""treadle's exceptions: one root, specific leaves, messages that say what to do.

    TreadleError
    ├── ConfigError            bad option, env var, CLI flag or argument (also a ValueError)
    │   └── AccessFilterError       an auth handler's filter treadle cannot apply (HTTP 500)
    ├── GraphLoadError         a graph reference (REF) could not be loaded
    ├── InputError             run input that cannot be parsed or validated
    │   ├── RefusedConfigError      a run config key a client may not send (over HTTP)
    │   ├── RunSpecVersionError     a queued run written in a format this code cannot read
    │   └── WebhookRefusedError     a webhook URL the webhooks policy refuses
    ├── NotFoundError          no such assistant, thread, run, graph or cron
    ├── ConflictError          a resource with that id exists already, or is busy
    │   ├── IdempotencyKeyError     an idempotency key reused for a different request
    │   └── ThreadBusyError         the thread has an active run (multitask_strategy=reject)
    ├── StoreError             anything from the store
    │   ├── StoreUnavailableError   the database cannot be reached (transient)
    │   ├── StoreDataError          a value the database can never store (permanent)
    │   │   └── EncryptionError         a stored value cannot be decrypted, or is plaintext
    │   ├── FencedWriteError        a write from a writer whose claim is stale
    │   └── SchemaError             schema newer than the code, or migrations missing
    │       └── MigrationsPendingError  pre migrations this code needs are not applied yet
    ├── PriorityError          langgraph.json's priority handler failed (HTTP 500)
    ├── UsageError             called where it cannot work: outside a node, a shut-down pool
    ├── WaitTimeoutError       stopped waiting for a cluster run still going (also a TimeoutError)
    ├── RunFailedError         a cluster run ended without success
    │   └── QueueTimeoutError       no worker claimed it within its queue_timeout
    └── NodeError              a node attempt failed in a treadle-specific way
        ├── NodeTimeoutError        the attempt ran past its timeout
        ├── TaskCrashedError        the process running the attempt died
        ├── CircuitOpenError        the node's circuit breaker is open
        ├── SandboxLimitError       a sandboxed attempt hit its memory, CPU or wall-time limit
        ├── SandboxUnavailableError the kernel refused an isolation the sandbox requires
        └── RemoteNodeError         a node task another worker ran failed

Driver errors are translated once, at the store boundary (``raise ... from exc``). The
HTTP server maps these to statuses in one place (``treadle.server.app``): NotFoundError
404, ConflictError 409, RefusedConfigError 400, InputError and ConfigError 422.
"""

from __future__ import annotations

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
    "SchemaError",
    "StoreDataError",
    "StoreError",
    "StoreUnavailableError",
    "RemoteNodeError",
    "RunFailedError",
    "RunSpecVersionError",
    "SandboxLimitError",
    "SandboxUnavailableError",
    "TaskCrashedError",
    "ThreadBusyError",
    "TreadleError",
    "UsageError",
    "WaitTimeoutError",
    "WebhookRefusedError",
]


class TreadleError(Exception):
    """Root of every error treadle raises on purpose."""


class ConfigError(TreadleError, ValueError):
    """An option, environment variable, CLI flag or argument has a bad value (also a
    ValueError, what Python raises for a bad argument)."""


class AccessFilterError(ConfigError):
    """An authorization handler returned a filter treadle cannot apply (an unknown
    operator, a malformed value): a server-side configuration error, never an allow."""


class GraphLoadError(TreadleError):
    """A graph reference could not be resolved to a LangGraph graph."""


class InputError(TreadleError):
    """Run input could not be parsed or does not fit the graph."""


class RefusedConfigError(InputError):
    """A run config holds a key a client may not send over the HTTP API (it steers where
    and how the server runs graphs)."""


class RunSpecVersionError(InputError):
    """A queued run's payload was written in a format version this code cannot read."""


class WebhookRefusedError(InputError):
    """A run's webhook URL (or an address its host resolves to) that langgraph.json's
    ``webhooks`` policy refuses."""


class NotFoundError(TreadleError):
    """No such resource (assistant, thread, run, graph, cron)."""


class ConflictError(TreadleError):
    """A resource (assistant, thread, cron) with that id exists already, or is busy."""


class IdempotencyKeyError(ConflictError):
    """An idempotency key already names a run created by a different request."""

    def __init__(self, key: str, run_id: str) -> None:
        self.key, self.run_id = key, run_id
        super().__init__(
            f"idempotency key {key!r} was used for a different request (run {run_id}): "
            "retry with the same request, or use a new key for a new run"
        )


class StoreError(TreadleError):
    """An error from the store (database) layer."""


class StoreUnavailableError(StoreError):
    """The store could not be reached."""


class StoreDataError(StoreError):
    """The store refused a value it can never hold (too large, invalid text, a NUL where
    text cannot have one): retrying cannot succeed, so the run fails at once."""


class EncryptionError(StoreDataError):
    """Encryption at rest refused a value: it reads as plaintext while encryption is on
    (``TREADLE_ENCRYPTION_ALLOW_PLAINTEXT`` reads legacy rows), its key id is not in the
    keyring, or it fails authentication (altered, or the wrong key)."""


class FencedWriteError(StoreError):
    """A write was refused because another writer has claimed the thread since.

    Every execution of a thread claims it (the thread's epoch rises and the
    execution's token becomes the owner); a checkpoint or task write carrying
    another token is refused: its writer lost the claim and must stop.
    """

    def __init__(self, thread_id: str, current_epoch: int) -> None:
        self.thread_id = thread_id
        self.current_epoch = current_epoch
        super().__init__(
            f"write to thread {thread_id!r} refused: another execution has claimed the "
            f"thread since this one started (thread epoch is now {current_epoch}); "
            "this execution must stop"
        )


class SchemaError(StoreError):
    """The database schema does not match what this code expects."""


class MigrationsPendingError(SchemaError):
    """Pre migrations this code needs are not applied yet (``treadle migrate --phase pre``
    applies them; ``treadle migrate --check --wait`` waits for them)."""


class NodeError(TreadleError):
    """A node attempt failed for a reason treadle detected."""


class NodeTimeoutError(NodeError, TimeoutError):
    """A node attempt ran longer than its timeout and was abandoned or killed."""


class TaskCrashedError(NodeError):
    """The process running a node attempt died (os._exit, signal, segfault)."""

    #: The process's exit code (negative: the signal that killed it), when known.
    exitcode: int | None = None


class SandboxLimitError(NodeError):
    """A sandboxed node attempt hit one of its limits; ``limit`` names it ("memory",
    "cpu" or "wall"). Its process was stopped; the worker and other runs go on."""

    def __init__(self, message: str, limit: str = "") -> None:
        super().__init__(message, limit)
        self.limit = limit

    def __str__(self) -> str:
        return str(self.args[0])


class SandboxUnavailableError(NodeError):
    """A sandbox asked for an isolation this kernel refuses (a network namespace when
    ``TREADLE_SANDBOX_NETWORK=required``, or no-new-privileges); the node did not run."""


class CircuitOpenError(NodeError):
    """A node failed too many times in a row; calls fail fast during the cool-down."""


class PriorityError(TreadleError):
    """langgraph.json's ``priority`` handler failed, or returned settings outside the SDK's
    range; the run was not created (the deployment's code is at fault: a 500)."""


class ThreadBusyError(ConflictError):
    """A run was refused because its thread already has an active run
    (``multitask_strategy="reject"``)."""

    def __init__(self, thread_id: str, active: list[str]) -> None:
        self.thread_id = thread_id
        self.active = active
        super().__init__(
            f"thread {thread_id!r} is busy with run(s) {', '.join(active)}; wait for them, "
            "or pass multitask_strategy='enqueue', 'interrupt' or 'rollback'"
        )


class UsageError(TreadleError, RuntimeError):
    """treadle was called where it cannot work: outside a running node, on a pool that is
    shut down (also a RuntimeError)."""


class WaitTimeoutError(TreadleError, TimeoutError):
    """A caller stopped waiting for a cluster run that is still pending or running (the run
    itself goes on; wait again or cancel it)."""


class RunFailedError(TreadleError):
    """A cluster run ended without success (error, timeout, cancelled)."""

    def __init__(self, run_id: str, status: str, error: str | None) -> None:
        self.run_id = run_id
        self.status = status
        self.error = error
        detail = f": {error}" if error else ""
        super().__init__(f"run {run_id} ended with status {status!r}{detail}")


class QueueTimeoutError(RunFailedError, TimeoutError):
    """No worker claimed a cluster run within its ``queue_timeout``; the run was cancelled
    (for good: no worker picks it up later)."""

    def __init__(self, run_id: str, graph_id: str, error: str) -> None:
        self.run_id, self.status, self.error, self.graph_id = run_id, "cancelled", error, graph_id
        TreadleError.__init__(self, f"run {run_id} cancelled: {error}")


class RemoteNodeError(NodeError):
    """A node task run by another worker failed; the message is that worker's error."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)
