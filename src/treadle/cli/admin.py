"""``treadle migrate`` and ``treadle version``."""

from __future__ import annotations

import sys

import typer
from rich.text import Text

from treadle.cli._app import app
from treadle.cli._output import _JSON_OPTION, _STORE_OPTION, _open, _print_json_line, _stdout
from treadle.errors import ConfigError
from treadle.store.migrate import PHASES
from treadle.store.urls import redact

# --- migrate / version ------------------------------------------------------------------------


@app.command()
def migrate(
    store: str | None = _STORE_OPTION,
    phase: str = typer.Option(
        "all", "--phase", envvar="TREADLE_MIGRATE_PHASE",
        help="pre: only pre migrations (before a rollout); post: the rest (after it, once "
        "old pods are gone); all: both.",
    ),
    json_output: bool = _JSON_OPTION,
) -> None:
    """Apply pending schema migrations to the store."""
    if phase not in PHASES:
        raise ConfigError(f"unknown --phase {phase!r}: use pre, post or all")
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
