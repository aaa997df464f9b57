"""Per-node progress of a ``treadle run``: a live table on a terminal, plain lines otherwise.

Fed from LangGraph's ``"tasks"`` stream mode (one event when a task starts,
``{"id", "name", "input", "triggers"}``, one when it ends, ``{"id", "name",
"error", "result", "interrupts"}``) and from treadle's retry log records, which
carry the attempt numbers LangGraph does not stream.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from treadle.redaction import redact

__all__ = ["LiveProgress", "NullProgress", "PlainProgress", "Progress", "TaskRow"]

_STYLES = {
    "running": "yellow",
    "retrying": "yellow",
    "done": "green",
    "restored": "cyan",
    "interrupted": "magenta",
    "failed": "bold red",
    "cancelled": "dim",
}
_RETRY = re.compile(r"^node %r attempt %d/%d failed")
_GAVE_UP = re.compile(r"^node %r failed \(")


@dataclass
class TaskRow:
    id: str
    name: str
    started: float
    status: str = "running"
    attempts: int = 1
    ended: float | None = None
    error: str | None = None
    note: str = field(default="")

    @property
    def duration(self) -> float | None:
        if self.status == "restored":
            return None
        return (self.ended if self.ended is not None else time.monotonic()) - self.started


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m{secs:04.1f}s"


def _one_line(exc: Any) -> str:
    """An error's first line, its secrets hidden (treadle.redaction)."""
    if isinstance(exc, BaseException):
        text = str(exc).strip().splitlines()
        line = f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__
    else:
        line = str(exc).splitlines()[0] if str(exc) else ""
    return redact(line)


class Progress(logging.Handler):
    """Tracks task rows; subclasses render them. Also a log handler for retry records."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.rows: dict[str, TaskRow] = {}
        self._lock = threading.RLock()
        self.failed: TaskRow | None = None

    # --- feeding ------------------------------------------------------------------
    def on_task(self, namespace: tuple[str, ...], event: dict[str, Any]) -> None:
        """One ``"tasks"`` stream event (start or result) from ``namespace``."""
        name = str(event.get("name", "?"))
        if namespace:
            # Subgraph tasks: "parent/child" (namespace entries are "node:task_id").
            name = "/".join(ns.split(":", 1)[0] for ns in namespace) + "/" + name
        task_id = str(event.get("id", ""))
        row: TaskRow | None
        with self._lock:
            if "result" not in event and "error" not in event:
                row = TaskRow(task_id, name, time.monotonic())
                self.rows[task_id] = row
                self.started(row)
                return
            row = self.rows.get(task_id)
            if row is None:
                row = self.rows[task_id] = TaskRow(task_id, name, time.monotonic())
            row.ended = time.monotonic()
            if event.get("error") is not None:
                row.status = "failed"
                row.error = _one_line(event["error"])
                self.failed = self.failed or row
            elif event.get("interrupts"):
                row.status = "interrupted"
            else:
                row.status = "done"
            self.finished(row)

    def on_step_done(self) -> None:
        """A top-level step ended: tasks without a result had their writes restored."""
        with self._lock:
            for row in self.rows.values():
                if row.status in ("running", "retrying"):
                    row.status = "restored"
                    row.ended = time.monotonic()
                    row.note = "finished before; not run again"
                    self.finished(row)

    def on_stop(self, failed: bool) -> None:
        """The run ended; whatever still runs was cancelled (failure) or restored."""
        if not failed:
            self.on_step_done()
            return
        with self._lock:
            for row in self.rows.values():
                if row.status in ("running", "retrying"):
                    row.status = "cancelled"
                    row.ended = time.monotonic()
                    self.finished(row)

    def emit(self, record: logging.LogRecord) -> None:  # logging.Handler
        """treadle's node retry records: ``node %r attempt %d/%d failed (...)``."""
        try:
            msg = str(record.msg)
            args: tuple[Any, ...] = record.args if isinstance(record.args, tuple) else ()
            if _RETRY.match(msg) and len(args) >= 3:
                node, attempt, max_attempts = args[0], int(args[1]), int(args[2])
                with self._lock:
                    row = self._running(str(node))
                    if row is not None:
                        row.attempts = attempt + 1
                        row.status = "retrying"
                        row.note = f"attempt {attempt}/{max_attempts} failed: " + (
                            redact(f"{args[3]}: {args[4]}") if len(args) >= 5 else ""
                        )
                        self.retrying(row, max_attempts)
            elif _GAVE_UP.match(msg):
                pass  # the task's result event reports the failure
        except Exception:  # noqa: BLE001 - a display problem must never break the run
            pass

    def _running(self, node: str) -> TaskRow | None:
        for row in self.rows.values():
            if row.status in ("running", "retrying") and row.name.rsplit("/", 1)[-1] == node:
                return row
        return None

    # --- rendering hooks ------------------------------------------------------------
    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def started(self, row: TaskRow) -> None: ...

    def finished(self, row: TaskRow) -> None: ...

    def retrying(self, row: TaskRow, max_attempts: int) -> None: ...


class NullProgress(Progress):
    """Shows nothing (``--json``)."""


class PlainProgress(Progress):
    """One plain line per event on a stream (stderr when stdout is not a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream

    def _line(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def started(self, row: TaskRow) -> None:
        self._line(f"[{row.name}] running")

    def retrying(self, row: TaskRow, max_attempts: int) -> None:
        self._line(f"[{row.name}] retrying (attempt {row.attempts}/{max_attempts}): {row.note}")

    def finished(self, row: TaskRow) -> None:
        text = f"[{row.name}] {row.status}"
        if row.status != "restored":
            text += f" in {_fmt_duration(row.duration)}"
        if row.attempts > 1:
            text += f" after {row.attempts} attempts"
        if row.error:
            text += f": {row.error}"
        elif row.status == "restored":
            text += f" ({row.note})"
        self._line(text)


class LiveProgress(Progress):
    """A rich Live table: node, status, attempts, duration (and the error of a failure)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console
        self._live = Live(console=console, refresh_per_second=8, transient=False,
                          get_renderable=self.render)

    def render(self) -> Table:
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        table.add_column("node")
        table.add_column("status")
        table.add_column("attempts", justify="right")
        table.add_column("duration", justify="right")
        table.add_column("", overflow="ellipsis", no_wrap=True)
        with self._lock:
            rows = list(self.rows.values())
        for row in rows:
            table.add_row(
                row.name,
                Text(row.status, style=_STYLES.get(row.status, "")),
                str(row.attempts),
                _fmt_duration(row.duration),
                Text(row.error or row.note, style="red" if row.error else "dim"),
            )
        return table

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def _refresh(self) -> None:
        try:
            self._live.refresh()
        except Exception:  # noqa: BLE001
            pass

    def started(self, row: TaskRow) -> None:
        self._refresh()

    def finished(self, row: TaskRow) -> None:
        self._refresh()

    def retrying(self, row: TaskRow, max_attempts: int) -> None:
        self._refresh()
