"""The ``treadle`` command line: run graphs, inspect threads, migrate the store.

Errors print as one red line ``error: <message>`` on stderr and exit with code 1
(2 for usage errors); ``--debug`` (or ``TREADLE_DEBUG=1``) adds the traceback.
Every option has an environment twin (``--store`` / ``TREADLE_STORE``, ...).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import sys
import traceback
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import typer
from rich.console import Console
from rich.json import JSON
from rich.table import Table
from rich.text import Text

from treadle.errors import ConfigError, InputError, TreadleError

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

__all__ = ["app", "main"]

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
    context_settings={"help_option_names": ["-h", "--help"]},
)
threads_app = typer.Typer(
    name="threads", help="Inspect threads in the store.", no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(threads_app, name="threads")


class _State:
    debug = False


_STATE = _State()
_MISSING = object()


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
    from pydantic import ValidationError

    from treadle.config import get_settings

    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err.get("loc", ())) or "?"
            flag = f"--{field.replace('_', '-')}" if field in overrides else None
            where = f"{flag} / TREADLE_{field.upper()}" if flag else f"TREADLE_{field.upper()}"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from exc


def _redact(url: str) -> str:
    """The store URL without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


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
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger("treadle").addHandler(handler)
        logging.getLogger("treadle").setLevel(logging.DEBUG)


# --- run -------------------------------------------------------------------------------------


def _parse_input(raw: str) -> Any:
    text = raw
    source = "--input"
    if raw.startswith("@"):
        path = raw[1:]
        source = f"--input file {path}"
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise InputError(f"cannot read --input file {path}: {exc.strerror or exc}") from exc
    elif raw == "-":
        source = "--input from stdin"
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"invalid {source} JSON: {exc.msg} at line {exc.lineno} column {exc.colno} "
            f"(char {exc.pos})"
        ) from exc


def _resume_hint(ref: str, thread_id: str, *, value: bool = False) -> str:
    cmd = f"treadle run {shlex.quote(ref)} --thread {shlex.quote(thread_id)} --resume"
    return cmd + (" --input '<JSON value>'" if value else "")


@app.command()
def run(
    ref: str = typer.Argument(
        ..., metavar="REF", help="The graph: path/to/file.py:attr or module.path:attr.",
        show_default=False,
    ),
    input_: str | None = typer.Option(
        None, "--input", "-i", envvar="TREADLE_INPUT", show_default=False,
        help="Input as JSON (@file.json reads a file, - reads stdin). With --resume: the "
             "value handed to the pending interrupt() (Command(resume=...)).",
    ),
    thread: str | None = typer.Option(
        None, "--thread", "-t", envvar="TREADLE_THREAD", show_default=False,
        help="Thread id (default: a new one).",
    ),
    store: str | None = typer.Option(
        None, "--store", envvar="TREADLE_STORE", show_default=False,
        help="Store URL: sqlite:///path.db or postgresql://... (default .treadle/treadle.db).",
    ),
    max_workers: int | None = typer.Option(
        None, "--max-workers", envvar="TREADLE_MAX_WORKERS", min=1, show_default=False,
        help="At most this many nodes run at once.",
    ),
    resume: bool = typer.Option(
        False, "--resume", envvar="TREADLE_RESUME",
        help="Continue --thread from its last checkpoint; finished nodes are not run again.",
    ),
    json_output: bool = typer.Option(
        False, "--json", envvar="TREADLE_JSON",
        help="Print only the final state, as one JSON line on stdout.",
    ),
    recursion_limit: int | None = typer.Option(
        None, "--recursion-limit", envvar="TREADLE_RECURSION_LIMIT", min=1, show_default=False,
        help="LangGraph's limit on super-steps per run (default 25).",
    ),
) -> None:
    """Run a graph on a thread, durably; show per-node progress and the final state."""
    if resume and not thread:
        raise typer.BadParameter(
            "--resume needs --thread ID (the thread to continue)", param_hint="'--resume'"
        )
    parsed = _parse_input(input_) if input_ is not None else _MISSING

    from langgraph.types import Command

    import treadle
    from treadle.graphs import load_graph
    from treadle.progress import LiveProgress, NullProgress, PlainProgress, Progress

    settings = _settings(store=store, max_workers=max_workers)
    thread_id = thread or str(uuid.uuid4())
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    if recursion_limit is not None:
        config["recursion_limit"] = recursion_limit

    graph = load_graph(ref, config={"configurable": {"thread_id": thread_id}})
    tg = treadle.compile(graph, settings=settings)
    try:
        if resume:
            if tg.checkpointer.get_tuple({"configurable": {"thread_id": thread_id}}) is None:
                raise InputError(
                    f"thread {thread_id!r} has no checkpoint in {_redact(settings.store)}: "
                    "nothing to resume (check --thread and --store)"
                )
            run_input: Any = None if parsed is _MISSING else Command(resume=parsed)
        else:
            run_input = {} if parsed is _MISSING else parsed

        interactive = not json_output and sys.stdout.isatty()
        progress: Progress
        if json_output:
            progress = NullProgress()
        elif interactive:
            progress = LiveProgress(Console(stderr=False))
        else:
            progress = PlainProgress(sys.stderr)

        log = logging.getLogger("treadle")
        log.addHandler(progress)
        if not _STATE.debug:
            log.propagate = False  # retry records are shown by the progress display
        last_values: Any = _MISSING
        failure: BaseException | None = None
        try:
            with progress:
                try:
                    for namespace, mode, chunk in tg.stream(
                        run_input, config, stream_mode=["tasks", "values"], subgraphs=True
                    ):
                        if mode == "tasks":
                            progress.on_task(tuple(namespace), chunk)
                        elif mode == "values" and not namespace:
                            last_values = chunk
                            if not (isinstance(chunk, dict) and "__interrupt__" in chunk):
                                progress.on_step_done()
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failure = exc
                finally:
                    progress.on_stop(failed=failure is not None)
        finally:
            log.removeHandler(progress)

        if failure is not None:
            _run_failed(failure, progress, ref, thread_id)

        snapshot = tg.get_state({"configurable": {"thread_id": thread_id}})
        final = snapshot.values if last_values is _MISSING else last_values
        interrupts = list(getattr(snapshot, "interrupts", ()) or ())
        if json_output:
            if interrupts and isinstance(final, dict) and "__interrupt__" not in final:
                final = {**final, "__interrupt__": interrupts}
            _print_json_line(final)
            return
        _report(final, interrupts, tuple(snapshot.next or ()), ref, thread_id, interactive)
    finally:
        tg.close()


def _run_failed(failure: BaseException, progress: Any, ref: str, thread_id: str) -> NoReturn:
    hint = f"thread {thread_id}; after fixing the cause, resume with: {_resume_hint(ref, thread_id)}"
    if isinstance(failure, KeyboardInterrupt):
        _error(f"interrupted ({hint})")
        raise typer.Exit(130)
    row = progress.failed
    if row is not None:
        raise TreadleError(f"node {row.name!r} failed: {row.error} ({hint})") from failure
    if isinstance(failure, TreadleError):
        raise failure
    if not isinstance(failure, Exception):
        raise failure
    raise TreadleError(f"run failed: {_summary(failure)} ({hint})") from failure


def _report(
    final: Any, interrupts: list[Any], next_nodes: tuple[str, ...], ref: str, thread_id: str,
    interactive: bool,
) -> None:
    """The final state on stdout; thread and resume hints beside it (stderr if piped)."""
    out = _stdout()
    info = out if interactive else _stderr()
    state = {k: v for k, v in final.items() if k != "__interrupt__"} if isinstance(final, dict) \
        else final
    _pretty_json(out, state)
    info.print(Text.assemble(("thread: ", "bold"), thread_id))
    if interrupts:
        for intr in interrupts:
            value = getattr(intr, "value", intr)
            info.print(Text.assemble(
                ("interrupted: ", "bold magenta"), _json_line(value),
            ))
        info.print(Text.assemble(
            ("resume with: ", "bold"), _resume_hint(ref, thread_id, value=True),
        ))
    elif next_nodes:
        info.print(Text.assemble(("paused before: ", "bold magenta"), ", ".join(next_nodes)))
        info.print(Text.assemble(("continue with: ", "bold"), _resume_hint(ref, thread_id)))


# --- threads ---------------------------------------------------------------------------------


_STORE_OPTION = typer.Option(
    None, "--store", envvar="TREADLE_STORE", show_default=False,
    help="Store URL: sqlite:///path.db or postgresql://... (default .treadle/treadle.db).",
)
_JSON_OPTION = typer.Option(False, "--json", envvar="TREADLE_JSON", help="Print JSON.")


def _open(store: str | None, *, auto_migrate: bool = True) -> Any:
    from treadle.store import open_store

    settings = _settings(store=store)
    return open_store(settings.store, auto_migrate=auto_migrate)


@threads_app.command("list")
def threads_list(
    store: str | None = _STORE_OPTION,
    limit: int = typer.Option(50, "--limit", "-n", min=1, help="Show at most this many."),
    json_output: bool = _JSON_OPTION,
) -> None:
    """List threads, most recently updated first."""
    backend = _open(store)
    try:
        threads = backend.list_threads(limit)
    finally:
        backend.close()
    if json_output:
        _print_json_line([dataclasses.asdict(t) for t in threads])
        return
    out = _stdout()
    if not threads:
        out.print("no threads")
        return
    table = Table(header_style="bold", box=None, pad_edge=False)
    for column in ("thread", "epoch", "checkpoints", "updated_at", "latest checkpoint"):
        table.add_column(column, no_wrap=True)
    for t in threads:
        table.add_row(t.thread_id, str(t.epoch), str(t.checkpoints), str(t.updated_at),
                      t.latest_checkpoint_id or "-")
    out.print(table)


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
        if channel.startswith("branch:to:"):
            node = channel[len("branch:to:"):]
        elif channel == "__start__":
            node = "__start__"
        else:
            continue
        if _version_key(versions.get(channel)) > _version_key(seen.get(node, {}).get(channel)):
            nodes.append(node)
    for packet in values.get("__pregel_tasks") or ():
        node = getattr(packet, "node", None)
        if node:
            nodes.append(str(node))
    return list(dict.fromkeys(nodes))


@threads_app.command("show")
def threads_show(
    thread_id: str = typer.Argument(
        ..., metavar="THREAD_ID", help="The thread to show.", show_default=False
    ),
    store: str | None = _STORE_OPTION,
    json_output: bool = _JSON_OPTION,
) -> None:
    """Show a thread's latest checkpoint: state, metadata, next nodes, pending writes."""
    from treadle.checkpointer import TreadleSaver

    backend = _open(store)
    try:
        saver = TreadleSaver(backend)
        tup = saver.get_tuple({"configurable": {"thread_id": thread_id}})
        if tup is None:
            raise TreadleError(f"no thread {thread_id!r} in {_redact(backend.url)}")
        epoch = backend.thread_epoch(thread_id)
    finally:
        backend.close()
    checkpoint = tup.checkpoint
    values = {k: v for k, v in (checkpoint.get("channel_values") or {}).items()
              if not _is_internal(k)}
    errors = [
        {"task_id": task_id, "error": _summary(value) if isinstance(value, BaseException)
         else str(value)}
        for task_id, channel, value in tup.pending_writes or ()
        if channel == "__error__"
    ]
    interrupts = [
        getattr(item, "value", item)
        for _task, channel, value in tup.pending_writes or ()
        if channel == "__interrupt__"
        for item in (value if isinstance(value, (list, tuple)) else [value])
    ]
    info = {
        "thread_id": thread_id,
        "epoch": epoch,
        "checkpoint_id": tup.config["configurable"].get("checkpoint_id"),
        "parent_checkpoint_id": (tup.parent_config or {}).get("configurable", {}).get(
            "checkpoint_id"),
        "created_at": checkpoint.get("ts"),
        "metadata": dict(tup.metadata or {}),
        "next": _next_nodes(checkpoint),
        "pending_writes": len(tup.pending_writes or ()),
        "errors": errors,
        "interrupts": interrupts,
        "values": values,
    }
    if json_output:
        _print_json_line(info)
        return
    out = _stdout()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for key in ("thread_id", "epoch", "checkpoint_id", "parent_checkpoint_id", "created_at"):
        grid.add_row(key.replace("_", " "), str(info[key] if info[key] is not None else "-"))
    grid.add_row("next", ", ".join(info["next"]) or "- (finished)")
    grid.add_row("pending writes", str(info["pending_writes"]))
    for err in errors:
        grid.add_row("error", Text(f"task {err['task_id']}: {err['error']}", style="red"))
    for value in interrupts:
        grid.add_row("interrupt", Text(_json_line(value), style="magenta"))
    out.print(grid)
    out.print(Text("metadata", style="bold"))
    _pretty_json(out, info["metadata"])
    out.print(Text("values", style="bold"))
    _pretty_json(out, values)


# --- migrate / version ------------------------------------------------------------------------


@app.command()
def migrate(
    store: str | None = _STORE_OPTION,
    json_output: bool = _JSON_OPTION,
) -> None:
    """Apply pending schema migrations to the store."""
    backend = _open(store, auto_migrate=False)
    try:
        applied = backend.migrate()
        version = backend.schema_version()
        url = backend.url
    finally:
        backend.close()
    if json_output:
        _print_json_line({"store": _redact(url), "applied": applied, "schema_version": version})
        return
    out = _stdout()
    if applied:
        for name in applied:
            out.print(Text.assemble(("applied ", "green"), name))
    else:
        out.print("schema is up to date; nothing to apply")
    out.print(f"schema version {version} ({_redact(url)})", highlight=False)


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


# --- entry point ------------------------------------------------------------------------------


def _is_click_exception(exc: BaseException) -> bool:
    # typer >= 0.2x vendors click; older typers raise click's own: match by name.
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def _env_debug() -> bool:
    return os.environ.get("TREADLE_DEBUG", "").strip().lower() in ("1", "true", "yes", "on", "y")


def _error(message: str) -> None:
    message = " ".join(_first_line(message).split()) if not _STATE.debug else \
        " ".join(str(message).split())
    _stderr().print(Text(f"error: {message}", style="red"))


def run_cli(args: list[str] | None = None) -> int:
    """Run the CLI on ``args`` (default ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if args is None else list(args)
    # --debug is global but accepted anywhere (before a "--"): `treadle run REF --debug`.
    cut = argv.index("--") if "--" in argv else len(argv)
    _STATE.debug = _env_debug() or "--debug" in argv[:cut]
    argv = [a for a in argv[:cut] if a != "--debug"] + argv[cut:]
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="treadle", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        _error("aborted")
        return 1
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # `treadle ... | head`: the reader left; say nothing more.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 1
    except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
        if _is_click_exception(exc):
            return _usage_error(exc)
        if _STATE.debug:
            traceback.print_exception(exc, file=sys.stderr)
        if isinstance(exc, TreadleError):
            _error(str(exc) or type(exc).__name__)
        else:
            _error(f"{_summary(exc)} (run with --debug for the traceback)"
                   if not _STATE.debug else _summary(exc))
        return 1


def _usage_error(exc: Any) -> int:
    code = int(getattr(exc, "exit_code", 2))
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        sys.stdout.write(ctx.get_help() + "\n")
        return code
    message = exc.format_message()
    if ctx is not None and code == 2:
        message = f"{message} (see: {ctx.command_path} --help)"
    _error(message)
    return code


def main() -> NoReturn:
    """Console-script entry point (``treadle = "treadle.cli:main"``)."""
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
