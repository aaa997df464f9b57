"""``treadle runs list|show|cancel``: the cluster's run queue."""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from rich.table import Table

from treadle.cli._app import runs_app
from treadle.cli._output import _JSON_OPTION, _STORE_OPTION, _open_existing, _print_json_line, _stdout
from treadle.errors import InputError
from treadle.redaction import redact
from treadle.store.queue import CANCEL_ACTIONS, RUN_STATUSES, RunRow


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _doc(row: RunRow, waiting: str | None = None) -> dict[str, Any]:
    doc = {
        "run_id": row.run_id, "thread_id": row.thread_id, "graph_id": row.graph_id,
        "status": row.status, "attempt": row.attempt, "max_attempts": row.max_attempts,
        "lost_workers": row.lost, "epoch": row.epoch, "worker": row.worker, "cancel": row.cancel,
        "error": redact(row.error) if row.error else row.error,
        "created_at": row.created_at, "started_at": row.started_at, "ended_at": row.ended_at,
    }
    if row.status == "pending":
        doc["waiting"] = waiting  # why it has not started (treadle.cluster.pending)
    return doc


def _reasons(backend: Any, rows: list[RunRow]) -> dict[str, str]:
    from treadle.cluster.pending import pending_reason

    return {r.run_id: pending_reason(backend, r) for r in rows if r.status == "pending"}


@runs_app.command("list")
def runs_list(
    store: str | None = _STORE_OPTION,
    thread: str | None = typer.Option(None, "--thread", "-t", help="Only this thread's runs."),
    status: str | None = typer.Option(None, "--status", help=f"One of {', '.join(RUN_STATUSES)}."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Show at most this many."),
    json_output: bool = _JSON_OPTION,
) -> None:
    """List runs, newest first, with the worker holding each running one."""
    if status is not None and status not in RUN_STATUSES:
        raise typer.BadParameter(f"must be one of {', '.join(RUN_STATUSES)}", param_hint="'--status'")
    backend = _open_existing(store)
    try:
        rows = backend.list_runs(thread_id=thread, status=status, limit=limit)
        depth, age = backend.queue_depth()
        waiting = _reasons(backend, rows)
    finally:
        backend.close()
    if json_output:
        _print_json_line({"runs": [_doc(r, waiting.get(r.run_id)) for r in rows],
                          "pending": depth, "oldest_pending_s": age})
        return
    out = _stdout()
    if not rows:
        out.print("no runs")
    else:
        table = Table(header_style="bold", box=None, pad_edge=False)
        for column in ("run", "thread", "graph", "status", "attempt", "worker", "created"):
            table.add_column(column, no_wrap=True)
        for r in rows:
            table.add_row(r.run_id, r.thread_id, r.graph_id, r.status,
                          f"{r.attempt}/{r.max_attempts}" + (f", {r.lost} lost" if r.lost else ""),
                          r.worker or "-", _when(r.created_at))
        out.print(table)
        for run_id, why in waiting.items():  # below the table: a reason is a sentence
            out.print(f"{run_id}: {why}", highlight=False, soft_wrap=True)
    out.print(f"pending: {depth}" + (f" (oldest {age:.1f}s)" if age is not None else ""))


def _get(backend: Any, run_id: str) -> RunRow:
    row = backend.get_run(run_id)
    if row is None:
        raise InputError(f"no run {run_id!r} in this store (see: treadle runs list)")
    return row  # type: ignore[no-any-return]


@runs_app.command("show", short_help="Show one run; for a pending one, what it waits for.")
def runs_show(
    run_id: str = typer.Argument(..., metavar="RUN_ID"),
    store: str | None = _STORE_OPTION,
    json_output: bool = _JSON_OPTION,
) -> None:
    """Show one run: status, attempts, lease, error; for a pending one, what it waits for."""
    backend = _open_existing(store)
    try:
        row = _get(backend, run_id)
        doc = _doc(row, _reasons(backend, [row]).get(row.run_id))
    finally:
        backend.close()
    if json_output:
        _print_json_line(doc)
        return
    out = _stdout()
    for key, value in doc.items():
        if key.endswith("_at"):
            value = _when(value)
        out.print(f"[bold]{key}[/]: {'-' if value is None else value}", highlight=False,
                  soft_wrap=True)


@runs_app.command("cancel")
def runs_cancel(
    run_id: str = typer.Argument(..., metavar="RUN_ID"),
    store: str | None = _STORE_OPTION,
    action: str = typer.Option(
        "cancel", "--action",
        help="cancel (keep its state), interrupt (keep its state, status interrupted) or "
        "rollback (delete its checkpoints).",
    ),
    json_output: bool = _JSON_OPTION,
) -> None:
    """Stop a run: a pending one at once, a running one by its worker."""
    if action not in CANCEL_ACTIONS:
        raise typer.BadParameter(f"must be one of {', '.join(CANCEL_ACTIONS)}", param_hint="'--action'")
    backend = _open_existing(store)
    try:
        _get(backend, run_id)
        row = backend.cancel_run(run_id, action)
    finally:
        backend.close()
    if json_output:
        _print_json_line(_doc(row))
        return
    if row.status == "running":
        _stdout().print(f"run {run_id}: {action} requested; its worker ({row.worker}) stops it")
    else:
        _stdout().print(f"run {run_id}: {row.status}")
