"""Resource limits and isolation for one process-pool node attempt (Linux).

A node declares them in its metadata, next to its pool::

    builder.add_node("tool", tool, metadata={"treadle": {
        "pool": "process",
        "sandbox": {"memory_mb": 512, "cpu_seconds": 5, "wall_seconds": 10, "network": False},
    }})

Each sandboxed attempt runs in a process of its own (``ProcessPool.submit(...,
fresh=True)``), so its limits never reach another node's attempt. In that process,
before the body runs, :func:`run_sandboxed` turns the network off (a new, empty
network namespace), sets no-new-privileges and the resource limits; the pool's parent
kills the process at the wall-time deadline. A limit hit fails that attempt alone with
:class:`~treadle.errors.SandboxLimitError` naming the limit; it is not retried by
default (the same body would hit it again).

This bounds runaway or careless tools. It is not a security boundary against hostile
code: the process shares the kernel, the file system and the user's permissions (see
docs/security.md).
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import resource
import signal
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from treadle.errors import (
    ConfigError,
    NodeTimeoutError,
    SandboxLimitError,
    SandboxUnavailableError,
    TaskCrashedError,
)
from treadle.runtime.idempotency import set_process_key

__all__ = ["Sandbox", "run_sandboxed", "submit"]

log = logging.getLogger("treadle.runtime")

_KEYS = ("memory_mb", "cpu_seconds", "wall_seconds", "network")
_NETWORK_MODES = ("required", "best-effort")
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sandbox:
    """The limits of one node's attempts; ``None`` is no limit. ``network`` False runs
    the body in an empty network namespace (no interface, not even loopback)."""

    memory_mb: int | None = None
    cpu_seconds: int | None = None
    wall_seconds: float | None = None
    network: bool = True

    @classmethod
    def parse(cls, node: str, raw: Any) -> Sandbox | None:
        """The ``sandbox`` entry of a node's treadle options (a dict, or a Sandbox)."""
        if raw is None or isinstance(raw, Sandbox):
            return raw
        if not isinstance(raw, Mapping):
            raise ConfigError(f"node {node!r}: sandbox must be a dict of limits {_KEYS}")
        unknown = set(raw) - set(_KEYS)
        if unknown:
            raise ConfigError(f"node {node!r}: unknown sandbox option(s) {sorted(unknown)}; "
                              f"known: {list(_KEYS)}")
        if sys.platform != "linux":
            raise ConfigError(f"node {node!r}: sandbox needs Linux (resource limits, "
                              "prctl and namespaces); drop it on this platform")
        network = raw.get("network", True)
        if not isinstance(network, bool):
            raise ConfigError(f"node {node!r}: sandbox network must be true or false")
        return cls(memory_mb=_positive(node, raw, "memory_mb", whole=True),
                   cpu_seconds=_positive(node, raw, "cpu_seconds", whole=True),
                   wall_seconds=_positive(node, raw, "wall_seconds", whole=False),
                   network=network)

    def deadline(self, timeout: float | None) -> float | None:
        """When the parent kills the attempt: the nearer of the node's timeout and the
        wall-time limit."""
        limits = [t for t in (timeout, self.wall_seconds) if t is not None]
        return min(limits) if limits else None


def _positive(node: str, raw: Mapping[str, Any], key: str, *, whole: bool) -> Any:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"node {node!r}: sandbox {key} must be a positive number, "
                          f"not {value!r}")
    return math.ceil(value) if whole else float(value)


# --------------------------------------------------------------------- child side


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _errno_text() -> str:
    code = ctypes.get_errno()
    return f"{os.strerror(code)} (errno {code})"


def _unshare_network() -> str | None:
    """Enter a new, empty network namespace. ``None`` on success, else why not.

    With CAP_SYS_ADMIN a network namespace alone does; otherwise an unprivileged user
    namespace first (the process is single-threaded, as the kernel requires), mapping
    the process's own uid and gid so files keep their owners."""
    libc = _libc()
    if libc.unshare(_CLONE_NEWNET) == 0:
        return None
    first = _errno_text()
    uid, gid = os.geteuid(), os.getegid()
    if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) != 0:
        return (f"unshare(CLONE_NEWNET) failed: {first}; unshare(CLONE_NEWUSER|CLONE_NEWNET) "
                f"failed: {_errno_text()}")
    try:
        for path, text in (("/proc/self/setgroups", "deny"),
                           ("/proc/self/uid_map", f"{uid} {uid} 1"),
                           ("/proc/self/gid_map", f"{gid} {gid} 1")):
            with open(path, "w") as f:
                f.write(text)
    except OSError:
        pass  # the namespace holds; the process then runs as the overflow user
    return None


def _status(field: str) -> int:
    """A ``kB`` field of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _set_limits(node: str, box: Sandbox) -> None:
    # A core dump of a process killed by SIGXCPU is slow and fills the disk: none.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if box.cpu_seconds is not None:
        # SIGXCPU at the soft limit (it ends the process); SIGKILL a second later if the
        # body catches it.
        resource.setrlimit(resource.RLIMIT_CPU, (box.cpu_seconds, box.cpu_seconds + 1))
    if box.memory_mb is not None:
        limit = box.memory_mb * _MB
        data, size = _status("VmData"), _status("VmSize")
        if data >= limit:
            raise SandboxLimitError(
                f"node {node!r}: its memory limit of {box.memory_mb} MB is below what the "
                f"Python process already uses ({data // _MB} MB); raise memory_mb", "memory")
        # RLIMIT_DATA bounds the private memory (heap, anonymous mappings), interpreter
        # included; RLIMIT_AS stops the same growth through shared mappings.
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        resource.setrlimit(resource.RLIMIT_AS, (limit + size - data,) * 2)


def _enter(node: str, box: Sandbox, network_mode: str) -> list[str]:
    """Apply ``box`` to this process; returns what the parent should be told."""
    notes: list[str] = []
    if not box.network:
        refused = _unshare_network()
        if refused is not None:
            if network_mode == "required":
                raise SandboxUnavailableError(
                    f"node {node!r} must run without network, but the kernel refused a "
                    f"network namespace ({refused}); allow unprivileged user namespaces "
                    "(sysctl user.max_user_namespaces, kernel.unprivileged_userns_clone, or "
                    "the container's seccomp/AppArmor profile), or set "
                    "TREADLE_SANDBOX_NETWORK=best-effort to run it with network")
            notes.append(f"ran WITH network: the kernel refused a network namespace "
                         f"({refused}) and TREADLE_SANDBOX_NETWORK=best-effort")
    if _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SandboxUnavailableError(
            f"node {node!r}: the kernel refused no-new-privileges ({_errno_text()})")
    _set_limits(node, box)
    return notes


def run_sandboxed(node: str, box: Sandbox, network_mode: str, func: Callable[..., Any],
                  state: Any, key: str | None, kwargs: dict[str, Any]) -> tuple[Any, list[str]]:
    """In a fresh pool process: apply ``box``, run the node body, return its result and
    the notes for the parent's log."""
    set_process_key(key)
    notes = _enter(node, box, network_mode)
    try:
        return func(state, **kwargs), notes
    except MemoryError:
        if box.memory_mb is None:
            raise
        raise SandboxLimitError(
            f"node {node!r} exceeded its memory limit of {box.memory_mb} MB", "memory"
        ) from None


# --------------------------------------------------------------------- parent side

_warned: set[tuple[str, str]] = set()


def _translate(node: str, box: Sandbox, timeout: float | None,
               exc: BaseException) -> BaseException:
    """The pool's error for a sandboxed attempt, told in terms of its limits."""
    if isinstance(exc, MemoryError) and box.memory_mb is not None:
        # Out of memory outside the body (pickling its result): the same limit.
        return SandboxLimitError(
            f"node {node!r} exceeded its memory limit of {box.memory_mb} MB", "memory")
    if isinstance(exc, NodeTimeoutError) and box.wall_seconds is not None and (
            timeout is None or box.wall_seconds <= timeout):
        return SandboxLimitError(
            f"node {node!r} exceeded its wall-time limit of {box.wall_seconds:g} s; its "
            "process was killed", "wall")
    if isinstance(exc, TaskCrashedError):
        code = exc.exitcode
        if box.cpu_seconds is not None and code in (-signal.SIGXCPU, -signal.SIGKILL):
            # SIGKILL without our kill: the hard CPU limit (the body caught SIGXCPU), or
            # the OOM killer; the CPU limit is the likelier under a sandbox.
            return SandboxLimitError(
                f"node {node!r} exceeded its CPU limit of {box.cpu_seconds} s; its process "
                f"was killed ({'SIGXCPU' if code == -signal.SIGXCPU else 'SIGKILL'})", "cpu")
        if box.memory_mb is not None:
            crashed = TaskCrashedError(
                f"{exc} under a memory limit of {box.memory_mb} MB (a failed allocation in C "
                "code can end the process)")
            crashed.exitcode = code
            return crashed
    if isinstance(exc, NodeTimeoutError):
        return NodeTimeoutError(f"node {node!r} exceeded its timeout of {timeout:g}s; its "
                                "sandboxed process was killed")
    return exc


def _report(node: str, notes: list[str]) -> None:
    for note in notes:
        if (node, note) not in _warned:  # once per node and reason, per process
            _warned.add((node, note))
            log.warning("node %r sandbox: %s", node, note)


def submit(pool: Any, node: str, box: Sandbox, network_mode: str, timeout: float | None,
           func: Callable[..., Any], state: Any, key: str | None,
           kwargs: dict[str, Any]) -> Future[Any]:
    """Run one sandboxed attempt on ``pool`` (a ``ProcessPool``) in a process of its own;
    the future holds the body's result or the attempt's error."""
    if network_mode not in _NETWORK_MODES:
        raise ConfigError(f"sandbox_network must be one of {_NETWORK_MODES}, "
                          f"not {network_mode!r}")
    inner: Future[Any] = pool.submit(run_sandboxed, node, box, network_mode, func, state, key,
                                     kwargs, timeout=box.deadline(timeout), fresh=True)
    outer: Future[Any] = Future()

    def done(f: Future[Any]) -> None:
        if not outer.set_running_or_notify_cancel():
            return
        exc = f.exception() if not f.cancelled() else None
        if f.cancelled():
            outer.set_exception(TaskCrashedError("the sandboxed attempt was cancelled"))
        elif exc is not None:
            error = _translate(node, box, timeout, exc)
            if error is not exc:
                error.__cause__ = exc
            outer.set_exception(error)
        else:
            result, notes = f.result()
            _report(node, notes)
            outer.set_result(result)

    outer.add_done_callback(lambda f: inner.cancel() if f.cancelled() else None)
    inner.add_done_callback(done)
    return outer
