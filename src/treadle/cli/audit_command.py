"""``treadle audit list|verify``: the store's audit log (what the API and workers did)."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table

from treadle.cli._app import app
from treadle.cli._output import _JSON_OPTION, _STORE_OPTION, _open_existing, _print_json_line, _stdout

audit_app = typer.Typer(
    name="audit", help="Read and verify the audit log of API calls and runs.",
    no_args_is_help=True, pretty_exceptions_enable=False,
)
app.add_typer(audit_app, name="audit")


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@audit_app.command("list")
def audit_list(
    store: str | None = _STORE_OPTION,
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=10_000, help="Show at most this many."),
    actor: str | None = typer.Option(None, "--actor", help="Only this actor's records."),
    action: str | None = typer.Option(None, "--action", help="Only this action (threads.create)."),
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's records."),
    after_seq: int | None = typer.Option(
        None, "--after-seq", min=0, help="Records after this seq, oldest first (default: the "
        "newest ones)."),
    json_output: bool = _JSON_OPTION,
) -> None:
    """List audit records: the newest LIMIT, oldest first."""
    backend = _open_existing(store)
    try:
        if after_seq is None:
            records = list(reversed(backend.list_audit(limit=limit, actor=actor, action=action,
                                                       tenant=tenant, newest=True)))
        else:
            records = backend.list_audit(after_seq=after_seq, limit=limit, actor=actor,
                                         action=action, tenant=tenant)
    finally:
        backend.close()
    if json_output:
        for r in records:
            _print_json_line(r.to_json())
        return
    out = _stdout()
    if not records:
        out.print("no audit records")
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in ("seq", "at", "actor", "tenant", "action", "resource", "outcome", "request"):
        table.add_column(column, no_wrap=True)
    for r in records:
        table.add_row(str(r.seq), _when(r.at), r.actor, r.tenant or "-", r.action,
                      f"{r.resource or '-'}/{r.resource_id or '-'}", r.outcome,
                      r.request_id or "-")
    out.print(table)


@audit_app.command("verify", short_help="Walk the hash chain; exit 1 if it is broken.")
def audit_verify(
    store: str | None = _STORE_OPTION,
    head: str | None = typer.Option(
        None, "--head", metavar="SEQ:HASH",
        help="A head printed by an earlier verify (kept off this host): the chain must "
        "still hold it, which catches a chain rewritten whole."),
    json_output: bool = _JSON_OPTION,
) -> None:
    """Walk the hash chain; exit 1 naming the first broken record if it is broken."""
    anchor = None
    if head is not None:
        seq, _, digest = head.partition(":")
        if not seq.isdigit() or int(seq) < 1 or len(digest) != 64:
            raise typer.BadParameter("give SEQ:HASH, as `treadle audit verify` prints the head",
                                     param_hint="'--head'")
        anchor = (int(seq), digest.lower())
    backend = _open_existing(store)
    try:
        verdict = backend.verify_audit(anchor)
    finally:
        backend.close()
    if json_output:
        _print_json_line(verdict.to_json())
    elif verdict.ok:
        _stdout().print(f"audit log intact: {verdict.records} records, head "
                        f"{verdict.head_seq}:{verdict.head_hash}", highlight=False)
    else:
        _stdout().print(f"audit log BROKEN at seq {verdict.broken_seq}: {verdict.reason} "
                        f"({verdict.records} records verified before it)", highlight=False)
    if not verdict.ok:
        raise typer.Exit(1)
