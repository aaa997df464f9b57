"""The typer applications every command module registers on, and the CLI's shared state."""

from __future__ import annotations

import typer

__all__ = ["app", "runs_app", "threads_app"]

_HELP = (
    "treadle: a production runtime for LangGraph: durable, recoverable, parallel.\n\n"
    "Every option has an environment twin: --store is TREADLE_STORE, --max-workers "
    "is TREADLE_MAX_WORKERS, and so on."
)

app = typer.Typer(
    name="treadle",
    help=_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
threads_app = typer.Typer(
    name="threads", help="Inspect threads in the store.", no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(threads_app, name="threads")
runs_app = typer.Typer(
    name="runs", help="Inspect and cancel runs queued for workers (runtime=distributed).",
    no_args_is_help=True, pretty_exceptions_enable=False,
)
app.add_typer(runs_app, name="runs")


class _State:
    debug = False


_STATE = _State()
_MISSING = object()
