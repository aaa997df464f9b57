"""``treadle migrate`` and ``treadle version``."""

from __future__ import annotations

import sys
import time

import typer
from rich.text import Text

from treadle.cli._app import app
from treadle.cli._output import (
    _JSON_OPTION,
    _STORE_OPTION,
    _open,
    _print_json_line,
    _stderr,
    _stdout,
)
from treadle.errors import ConfigError, MigrationsPendingError, StoreUnavailableError
from treadle.store.migrate import PHASES
from treadle.store.urls import redact

# --- migrate / version ------------------------------------------------------------------------

#: Seconds between schema checks of ``treadle migrate --check --wait``.
CHECK_INTERVAL = 2.0


@app.command(short_help="Apply pending schema migrations (or --check them).")
def migrate(
    store: str | None = _STORE_OPTION,
    phase: str = typer.Option(
        "all", "--phase", envvar="TREADLE_MIGRATE_PHASE",
        help="pre: only pre migrations (before a rollout); post: the rest (after it, once "
        "old pods are gone); all: both.",
    ),
    check: bool = typer.Option(
        False, "--check", envvar="TREADLE_MIGRATE_CHECK",
        help="Apply nothing: exit 0 when this treadle can run on the store's schema, else "
        "1 with the reason (a missing pre migration, a newer schema).",
    ),
    wait: float = typer.Option(
        0, "--wait", envvar="TREADLE_MIGRATE_WAIT", min=0,
        help="With --check: wait up to this many seconds for missing pre migrations and for "
        "an unreachable database (the pods' init container waits for the migrate Job).",
    ),
    json_output: bool = _JSON_OPTION,
) -> None:
    """Apply pending schema migrations to the store (or --check the schema)."""
    if phase not in PHASES:
        raise ConfigError(f"unknown --phase {phase!r}: use pre, post or all")
    if wait and not check:
        raise ConfigError("--wait goes with --check (it waits for the schema, it does not "
                          "migrate)")
    if check:
        if phase != "all":
            raise ConfigError("--check takes no --phase: it checks what this treadle needs")
        _check(store, wait, json_output)
        return
    backend = _open(store, auto_migrate=False)
    try:
        applied = backend.migrate(phase)
        version = backend.schema_version()
        url = backend.url
    finally:
        backend.close()
    if json_output:
        _print_json_line({"store": redact(url), "phase": phase, "applied": applied,
                          "schema_version": version})
        return
    out = _stdout()
    if applied:
        for name in applied:
            out.print(Text.assemble(("applied ", "green"), name))
    else:
        out.print("schema is up to date; nothing to apply" if phase == "all"
                  else f"no {phase} migration to apply")
    out.print(f"schema version {version} ({redact(url)})", highlight=False)


def _check(store: str | None, wait: float, json_output: bool) -> None:
    """Until ``wait`` s have passed, retry what the migrate Job or the database will fix."""
    deadline = time.monotonic() + wait
    said = ""
    while True:
        try:
            backend = _open(store, auto_migrate=False)
            try:
                backend.check_schema()
                version, url = backend.schema_version(), backend.url
            finally:
                backend.close()
            break
        except (MigrationsPendingError, StoreUnavailableError) as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            if str(exc) != said:  # one line per reason, not one per attempt
                said = str(exc)
                _stderr().print(f"waiting (up to {left:.0f}s): {exc}", markup=False)
            time.sleep(min(CHECK_INTERVAL, left))
    if json_output:
        _print_json_line({"store": redact(url), "ready": True, "schema_version": version})
        return
    _stdout().print(f"schema version {version} is ready for this treadle ({redact(url)})",
                    markup=False)


@app.command()
def version() -> None:
    """Print treadle's version (and LangGraph's)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    import treadle

    try:
        langgraph = dist_version("langgraph")
    except PackageNotFoundError:
        langgraph = "?"
    py = ".".join(str(p) for p in sys.version_info[:3])
    sys.stdout.write(f"treadle {treadle.__version__} (langgraph {langgraph}, python {py})\n")


@app.command(short_help="Print a new encryption key for TREADLE_ENCRYPTION_KEYS.")
def keygen(
    key_id: str = typer.Option(
        "k1", "--id", help="The key's id, recorded in everything it encrypts (rotation: give "
        "each new key a new id and put it first)."),
) -> None:
    """Print ``ID:BASE64`` (a random 256-bit AES-GCM key): prepend it to
    TREADLE_ENCRYPTION_KEYS (comma-separated; the first key encrypts, all decrypt)."""
    from treadle.store.cipher import generate_key, parse_keyring

    entry = f"{key_id}:{generate_key()}"
    parse_keyring(entry)  # a bad id: one ConfigError line
    typer.echo(entry)
