"""``treadle keys create|list|revoke``: the built-in auth's API keys (``TREADLE_AUTH=builtin``)."""

from __future__ import annotations

import dataclasses
import sys
from datetime import UTC, datetime

import typer
from rich.table import Table
from rich.text import Text

from treadle.cli._app import app
from treadle.cli._output import (
    _JSON_OPTION,
    _STORE_OPTION,
    _open,
    _open_existing,
    _print_json_line,
    _stderr,
    _stdout,
)
from treadle.errors import NotFoundError
from treadle.store.api_keys import ROLES, ApiKey, check_role, check_tenant
from treadle.store.urls import redact

keys_app = typer.Typer(
    name="keys", no_args_is_help=True, pretty_exceptions_enable=False,
    short_help="Create, list and revoke the built-in auth's API keys.",
    help="API keys of the built-in auth (TREADLE_AUTH=builtin): each names a tenant and a "
    "role. The server checks keys against the store, so a revoked key stops working at once.",
)
app.add_typer(keys_app, name="keys")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@keys_app.command("create", short_help="Create an API key and print it, once.")
def keys_create(
    tenant: str = typer.Option(..., "--tenant", help="The tenant the key acts for.",
                               show_default=False),
    role: str = typer.Option(..., "--role", help=f"One of {', '.join(ROLES)} (each includes "
                             "the ones before it).", show_default=False),
    name: str | None = typer.Option(None, "--name", help="A note saying what the key is for.",
                                    show_default=False),
    store: str | None = _STORE_OPTION,
    json_output: bool = _JSON_OPTION,
) -> None:
    """Create an API key and print it, once: the store keeps only its hash."""
    check_tenant(tenant)
    check_role(role)
    backend = _open(store)  # like `treadle migrate`, it may be the store's first command
    try:
        record, key = backend.create_api_key(tenant, role, name)
    finally:
        backend.close()
    if json_output:
        _print_json_line({**dataclasses.asdict(record), "key": key})
        return
    named = f" ({record.name})" if record.name else ""
    _stderr().print(f"created key {record.key_id}{named} for tenant {record.tenant_id}, role "
                    f"{record.role}; it is shown once, store it now:", markup=False)
    sys.stdout.write(key + "\n")  # alone on stdout: `KEY=$(treadle keys create ...)`
    sys.stdout.flush()


@keys_app.command("list", short_help="List the API keys (never the keys themselves).")
def keys_list(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's keys.",
                                      show_default=False),
    store: str | None = _STORE_OPTION,
    json_output: bool = _JSON_OPTION,
) -> None:
    """List the API keys (never the keys themselves), oldest first, revoked ones too."""
    backend = _open_existing(store)
    try:
        keys: list[ApiKey] = backend.list_api_keys(tenant)
    finally:
        backend.close()
    if json_output:
        _print_json_line([dataclasses.asdict(k) for k in keys])
        return
    out = _stdout()
    if not keys:
        out.print("no API keys" + (f" for tenant {tenant}" if tenant else ""), markup=False)
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in ("id", "tenant", "role", "name", "created", "revoked"):
        table.add_column(column, no_wrap=True)
    for k in keys:
        table.add_row(k.key_id, k.tenant_id, k.role, Text(k.name or "-"), _when(k.created_at),
                      Text(_when(k.revoked_at), style="red" if k.revoked else ""))
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: str = typer.Argument(..., metavar="KEY_ID", show_default=False,
                                 help="The key's id (`treadle keys list`)."),
    store: str | None = _STORE_OPTION,
    json_output: bool = _JSON_OPTION,
) -> None:
    """Revoke an API key: requests with it are refused from now on."""
    backend = _open_existing(store)
    try:
        record = backend.revoke_api_key(key_id)
        url = backend.url
    finally:
        backend.close()
    if record is None:
        raise NotFoundError(f"no API key {key_id!r} in {redact(url)}: see `treadle keys list` "
                            "for the ids")
    if json_output:
        _print_json_line(dataclasses.asdict(record))
        return
    _stdout().print(f"revoked key {record.key_id} (tenant {record.tenant_id}, role "
                    f"{record.role}) at {_when(record.revoked_at)}", markup=False)
