"""``treadle threads list|show``: inspect the threads in a store."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from treadle._langgraph import BRANCH_TO_PREFIX, ERROR_CHANNEL, INTERRUPT_CHANNEL, TASKS_CHANNEL
from treadle.cli._app import threads_app
from treadle.cli._output import (
    _JSON_OPTION,
    _STORE_OPTION,
    _json_line,
    _open_existing,
    _pretty_json,
    _print_json_line,
    _stdout,
    _summary,
)
from treadle.errors import TreadleError
from treadle.redaction import redact as redact_text
from treadle.redaction import redact_value
from treadle.store.queue import ACTIVE
from treadle.store.urls import redact

_NO_TUPLE = object()

# --- threads ---------------------------------------------------------------------------------


@threads_app.command("list")
def threads_list(
    store: str | None = _STORE_OPTION,
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Show at most this many."),
    json_output: bool = _JSON_OPTION,
) -> None:
    """List threads, most recently updated first, with their status."""
    from treadle.store.checkpointer import TreadleSaver

    backend = _open_existing(store)
    try:
        threads = backend.list_threads(limit)
        saver = TreadleSaver(backend)
        statuses = [_status(backend, saver, t.thread_id) for t in threads]
    finally:
        backend.close()
    if json_output:
        _print_json_line([{**dataclasses.asdict(t), "status": status}
                          for t, status in zip(threads, statuses, strict=True)])
        return
    out = _stdout()
    if not threads:
        out.print("no threads")
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in ("thread", "status", "epoch", "checkpoints", "updated_at", "latest checkpoint"):
        table.add_column(column, no_wrap=True)
    for t, status in zip(threads, statuses, strict=True):
        table.add_row(t.thread_id, Text(status, style=_STATUS_STYLES.get(status, "")),
                      str(t.epoch), str(t.checkpoints), str(t.updated_at),
                      t.latest_checkpoint_id or "-")
    out.print(table)


_STATUS_STYLES = {"busy": "cyan", "interrupted": "magenta", "error": "red"}


def _status(backend: Any, saver: Any, thread_id: str, tup: Any = _NO_TUPLE) -> str:
    """busy (a queued run of the thread is pending or running), error (its latest
    checkpoint holds a node's error), interrupted (it stopped before its end: at an
    interrupt(), before a node, or cut short), else idle. Read off the store alone."""
    if any(backend.list_runs(thread_id=thread_id, status=s, limit=1) for s in ACTIVE):
        return "busy"
    if tup is _NO_TUPLE:
        tup = saver.get_tuple({"configurable": {"thread_id": thread_id}})
    if tup is None:
        return "idle"
    channels = {channel for _task, channel, _value in tup.pending_writes or ()}
    if ERROR_CHANNEL in channels:
        return "error"
    if INTERRUPT_CHANNEL in channels or _next_nodes(tup.checkpoint):
        return "interrupted"
    return "idle"


_INTERNAL_PREFIXES = ("__", "branch:", "join:")


def _is_internal(channel: str) -> bool:
    return channel.startswith(_INTERNAL_PREFIXES)


def _version_key(version: Any) -> tuple[int, str]:
    """Channel versions compare by their integer part (``"00..05.0.123"`` or ``5``)."""
    if version is None:
        return (-1, "")
    head, _, tail = str(version).partition(".")
    try:
        return (int(head), tail)
    except ValueError:
        return (-1, str(version))


def _next_nodes(checkpoint: Mapping[str, Any]) -> list[str]:
    """Nodes the next step would run, read off the checkpoint alone (no graph needed).

    A node is next when one of its ``branch:to:<node>`` triggers holds a value newer
    than the node has seen, or a ``Send`` to it is pending; ``__start__`` when input
    has not been processed yet.
    """
    values = checkpoint.get("channel_values") or {}
    versions = checkpoint.get("channel_versions") or {}
    seen = checkpoint.get("versions_seen") or {}
    nodes: list[str] = []
    for channel in values:
        if channel.startswith(BRANCH_TO_PREFIX):
            node = channel[len(BRANCH_TO_PREFIX):]
        elif channel == "__start__":
            node = "__start__"
        else:
            continue
        if _version_key(versions.get(channel)) > _version_key(seen.get(node, {}).get(channel)):
            nodes.append(node)
    for packet in values.get(TASKS_CHANNEL) or ():
        node = getattr(packet, "node", None)
        if node:
            nodes.append(str(node))
    return list(dict.fromkeys(nodes))


@threads_app.command("show", short_help="Show a thread's latest checkpoint.")
def threads_show(
    thread_id: str = typer.Argument(
        ..., metavar="THREAD_ID", help="The thread to show.", show_default=False
    ),
    store: str | None = _STORE_OPTION,
    json_output: bool = _JSON_OPTION,
) -> None:
    """Show a thread's latest checkpoint: state, metadata, next nodes, pending writes."""
    from treadle.store.checkpointer import TreadleSaver

    backend = _open_existing(store)
    try:
        saver = TreadleSaver(backend)
        tup = saver.get_tuple({"configurable": {"thread_id": thread_id}})
        if tup is None:
            raise TreadleError(f"no thread {thread_id!r} in {redact(backend.url)}")
        epoch = backend.thread_epoch(thread_id)
        status = _status(backend, saver, thread_id, tup)
        storage = backend.thread_storage(thread_id)
        ttl = backend.thread_ttl(thread_id)
    finally:
        backend.close()
    checkpoint = tup.checkpoint
    values = {k: v for k, v in (checkpoint.get("channel_values") or {}).items()
              if not _is_internal(k)}
    errors = [
        {"task_id": task_id, "error": redact_text(_summary(value) if isinstance(
            value, BaseException) else str(value))}
        for task_id, channel, value in tup.pending_writes or ()
        if channel == ERROR_CHANNEL
    ]
    interrupts = [
        getattr(item, "value", item)
        for _task, channel, value in tup.pending_writes or ()
        if channel == INTERRUPT_CHANNEL
        for item in (value if isinstance(value, (list, tuple)) else [value])
    ]
    info = {
        "thread_id": thread_id,
        "status": status,
        "epoch": epoch,
        "checkpoint_id": tup.config["configurable"].get("checkpoint_id"),
        "parent_checkpoint_id": (tup.parent_config or {}).get("configurable", {}).get(
            "checkpoint_id"),
        "created_at": checkpoint.get("ts"),
        "metadata": redact_value(dict(tup.metadata or {})),  # it holds the run's config
        "next": _next_nodes(checkpoint),
        "pending_writes": len(tup.pending_writes or ()),
        "errors": errors,
        "interrupts": interrupts,
        "values": values,
        "storage": storage.as_json(),
        "ttl": None if ttl is None else {"strategy": ttl[0].strategy,
                                         "ttl_minutes": ttl[0].minutes, "expires_at": ttl[1]},
    }
    if json_output:
        _print_json_line(info)
        return
    out = _stdout()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for key in ("thread_id", "status", "epoch", "checkpoint_id", "parent_checkpoint_id",
                "created_at"):
        grid.add_row(key.replace("_", " "), str(info[key] if info[key] is not None else "-"))
    grid.add_row("next", ", ".join(info["next"]) or "- (finished)")
    grid.add_row("pending writes", str(info["pending_writes"]))
    grid.add_row("storage", _storage_line(storage))
    if ttl is not None:
        grid.add_row("ttl", f"{ttl[0].minutes:g} min, {ttl[0].strategy}, expires "
                            f"{_when(ttl[1])}")
    for err in errors:
        grid.add_row("error", Text(f"task {err['task_id']}: {err['error']}", style="red"))
    for value in interrupts:
        grid.add_row("interrupt", Text(_json_line(value), style="magenta"))
    out.print(grid)
    out.print(Text("metadata", style="bold"))
    _pretty_json(out, info["metadata"])
    out.print(Text("values", style="bold"))
    _pretty_json(out, values)


def _storage_line(storage: Any) -> str:
    """``1,234 bytes: checkpoints 3 rows 800 B, blobs ...`` (the parts holding rows)."""
    parts = ", ".join(f"{part} {rows} rows {size:,} B"
                      for part, (rows, size) in storage.parts.items() if rows)
    return f"{storage.bytes:,} bytes" + (f": {parts}" if parts else "")


def _when(seconds: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds")
