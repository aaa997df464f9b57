"""Output plumbing shared by the commands: consoles, JSON lines, redaction, settings."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import Any

import typer
from rich.console import Console
from rich.json import JSON
from rich.text import Text

from treadle.cli._app import _STATE, app

# --- plumbing -----------------------------------------------------------------------------------


def _stdout() -> Console:
    # Piped output is not cut to 80 columns: tables keep their full ids.
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 4096)


def _stderr() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _summary(exc: BaseException) -> str:
    first = _first_line(str(exc))
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _settings(**overrides: Any) -> Any:
    """Settings from TREADLE_* and the flags; a bad value is one ConfigError line."""
    from treadle.config import get_settings
    from treadle.redaction import remember

    settings = get_settings(as_flags=True, **overrides)
    remember(settings)  # its secrets never print, even those given as flags
    return settings


def _to_jsonable(value: Any) -> Any:
    """``default=`` for json.dumps: pydantic models, dataclasses, sets; else ``str``."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump()
        except Exception:  # noqa: BLE001
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            return dataclasses.asdict(value)
        except Exception:  # noqa: BLE001
            pass
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _json_line(data: Any) -> str:
    return json.dumps(data, default=_to_jsonable, ensure_ascii=False)


def _print_json_line(data: Any) -> None:
    sys.stdout.write(_json_line(data) + "\n")
    sys.stdout.flush()


def _pretty_json(console: Console, data: Any) -> None:
    console.print(JSON(_json_line(data), indent=2), soft_wrap=True)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", envvar="TREADLE_DEBUG", help="Show tracebacks for errors."
    ),
) -> None:
    _STATE.debug = debug = _STATE.debug or debug
    if debug:
        from treadle.redaction import RedactingFormatter

        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger("treadle").addHandler(handler)
        logging.getLogger("treadle").setLevel(logging.DEBUG)
        logging.getLogger("treadle").propagate = False  # the root's handler would repeat it


def _error(message: str) -> None:
    from treadle.redaction import redact

    message = " ".join(_first_line(message).split()) if not _STATE.debug else \
        " ".join(str(message).split())
    message = redact(message)
    _stderr().print(Text(f"error: {message}", style="red"))


_STORE_OPTION = typer.Option(
    None, "--store", envvar="TREADLE_STORE", show_default=False, metavar="URL",
    help="Store URL: sqlite:///path.db or postgresql://... (default .treadle/treadle.db).",
)
_JSON_OPTION = typer.Option(False, "--json", envvar="TREADLE_JSON", help="Print JSON.")


def _open(store: str | None, *, auto_migrate: bool | None = None) -> Any:
    from treadle.store import open_store

    settings = _settings(store=store)
    return open_store(settings.store, auto_migrate=auto_migrate, settings=settings)


def _open_existing(store: str | None) -> Any:
    """The store, for a command that only reads it (or changes rows already in it): one
    that does not exist yet is an error, never created (no file, no directory, no schema)."""
    from treadle.errors import StoreError
    from treadle.store import open_store
    from treadle.store.urls import redact

    settings = _settings(store=store)
    url = settings.store
    missing = (f"no treadle store at {redact(url)}: pass --store (or TREADLE_STORE) with the "
               "store your runs use; `treadle run` and `treadle migrate` create one")
    if url.split(":", 1)[0].lower() == "sqlite":
        from treadle.store.drivers.sqlite import sqlite_path

        path, _options = sqlite_path(url)
        if not path.is_file():
            raise StoreError(missing)
    else:  # a database without treadle's tables: look before the migrations create them
        probe = open_store(url, auto_migrate=False, settings=settings)
        try:
            if probe.schema_version() == 0:
                raise StoreError(missing)
        finally:
            probe.close()
    return open_store(url, settings=settings)
