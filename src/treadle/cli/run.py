"""``treadle run``: run a graph with live per-node progress, or print its final state as JSON."""

from __future__ import annotations

import json
import logging
import shlex
import sys
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from treadle.errors import InputError, TreadleError

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

from treadle.cli._app import _MISSING, _STATE, app
from treadle.cli._output import (
    _error,
    _json_line,
    _pretty_json,
    _print_json_line,
    _settings,
    _stderr,
    _stdout,
    _summary,
)
from treadle.store.urls import redact

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


def _resume_hint(ref: str, thread_id: str, *, value: bool = False,
                 config: str | None = None) -> str:
    graph = shlex.quote(ref) + (f" --config {shlex.quote(config)}" if config else "")
    cmd = f"treadle run {graph} --thread {shlex.quote(thread_id)} --resume"
    return cmd + (" --input '<JSON value>'" if value else "")


@app.command(short_help="Run a graph durably, with per-node progress.")
def run(
    ref: str = typer.Argument(
        ..., metavar="REF", help="The graph: path/to/file.py:attr, module.path:attr, or a "
        "graph name of the langgraph.json (--config, else ./langgraph.json).",
        show_default=False,
    ),
    input_: str | None = typer.Option(
        None, "--input", "-i", envvar="TREADLE_INPUT", show_default=False, metavar="JSON",
        help="Input as JSON (@file.json reads a file, - reads stdin). With --resume: the "
             "value handed to the pending interrupt() (Command(resume=...)).",
    ),
    thread: str | None = typer.Option(
        None, "--thread", "-t", envvar="TREADLE_THREAD", show_default=False, metavar="ID",
        help="Thread id (default: a new one).",
    ),
    store: str | None = typer.Option(
        None, "--store", envvar="TREADLE_STORE", show_default=False, metavar="URL",
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
    runtime: str = typer.Option(
        "local", "--runtime", envvar="TREADLE_RUNTIME",
        help="local: run here. distributed: queue the run for `treadle worker` processes "
        "on the same --store serving REF (its langgraph.json name, else the REF string), "
        "and follow it.",
    ),
    config_file: str | None = typer.Option(
        None, "--config", "-c", envvar="TREADLE_CONFIG", show_default=False, metavar="FILE",
        help="A langgraph.json: REF may be one of its graph names, and a distributed run of "
        "one of its graphs is queued under that name (default: ./langgraph.json if present).",
    ),
    queue_timeout: float | None = typer.Option(
        None, "--queue-timeout", show_default=False,
        help="Distributed: cancel the run if no worker claims it within this many seconds "
        "[TREADLE_QUEUE_TIMEOUT].",
    ),
) -> None:
    """Run a graph on a thread, durably; show per-node progress and the final state."""
    if resume and not thread:
        raise typer.BadParameter(
            "--resume needs --thread ID (the thread to continue)", param_hint="'--resume'"
        )
    parsed = _parse_input(input_) if input_ is not None else _MISSING

    from langgraph.types import Command

    from treadle.cli.progress import LiveProgress, NullProgress, PlainProgress, Progress

    if runtime not in ("local", "distributed"):
        raise typer.BadParameter("must be local or distributed", param_hint="'--runtime'")
    settings = _settings(store=store, max_workers=max_workers, queue_timeout=queue_timeout)
    thread_id = thread or str(uuid.uuid4())
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    if recursion_limit is not None:
        config["recursion_limit"] = recursion_limit
    if runtime == "distributed":
        config["runtime"] = "distributed"  # type: ignore[typeddict-unknown-key]

    load_ref, name, worker_args = _resolve(ref, config_file, runtime == "distributed")
    tg = _compile(load_ref, thread_id, settings, name if runtime == "distributed" else None)
    tg.worker_args = worker_args
    waiting = _SayWaiting()  # "no live worker serves graph ..." (treadle.cluster.pending)
    logging.getLogger("treadle.client").addHandler(waiting)
    try:
        if resume:
            if tg.treadle_core.saver.get_tuple({"configurable": {"thread_id": thread_id}}) is None:
                raise InputError(
                    f"thread {thread_id!r} has no checkpoint in {redact(settings.store)}: "
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
            _run_failed(failure, progress, ref, thread_id, config_file)

        snapshot = tg.get_state({"configurable": {"thread_id": thread_id}})
        final = snapshot.values if last_values is _MISSING else last_values
        interrupts = list(getattr(snapshot, "interrupts", ()) or ())
        if json_output:
            if interrupts and isinstance(final, dict) and "__interrupt__" not in final:
                final = {**final, "__interrupt__": interrupts}
            _print_json_line(final)
            if interrupts or snapshot.next:  # stdout is the state alone: the thread on stderr
                _hints(_stderr(), interrupts, tuple(snapshot.next), ref, thread_id, config_file)
            return
        _report(final, interrupts, tuple(snapshot.next or ()), ref, thread_id, interactive,
                config_file)
    finally:
        logging.getLogger("treadle.client").removeHandler(waiting)
        tg.close()


class _SayWaiting(logging.Handler):
    """Prints a waiting caller's warnings (one plain line each, never wrapped: it holds a
    command to copy) on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(f"waiting: {record.getMessage()}\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - a display problem must never break the run
            pass


def _resolve(ref: str, config: str | None, distributed: bool) -> tuple[str, str | None, str]:
    """REF or a langgraph.json graph name -> (the REF to load, the graph's name for
    workers, the graph arguments of a `treadle worker` serving it).

    The name is the langgraph.json key when the graph is one of its entries (so
    `treadle worker --graphs langgraph.json` serves it), else the REF string itself."""
    from pathlib import Path

    from treadle.langgraph_json import load
    from treadle.store import serde_policy

    path = config or ("langgraph.json" if Path("langgraph.json").is_file() else None)
    bare = ":" not in ref
    if path is None or (not bare and not distributed and config is None):
        if bare:
            raise InputError(
                f"graph reference {ref!r} is not of the form path/to/file.py:attr or "
                "module.path:attr, nor a graph name of a langgraph.json (none in this "
                "directory; pass --config path/to/langgraph.json)"
            )
        return ref, ref, shlex.quote(ref)
    loaded = load(path)
    serde_policy.configure(loaded.serde)  # its checkpointer.serde, as the server's
    refs = loaded.refs
    served_by = f"--graphs {shlex.quote(path)}"
    if bare:
        if ref not in refs:
            raise InputError(f"{path} has no graph {ref!r} (its graphs: {', '.join(refs)})")
        return refs[ref], ref, served_by
    target = _canonical(ref)
    for name, entry in refs.items():
        if _canonical(entry) == target:
            return ref, name, served_by
    return ref, ref, shlex.quote(ref)


def _canonical(ref: str) -> str:
    """A REF with its file path made absolute (two spellings of one file compare equal)."""
    from pathlib import Path

    target, sep, attr = ref.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target):
        return f"{Path(target).resolve()}:{attr}"
    return ref


def _run_failed(failure: BaseException, progress: Any, ref: str, thread_id: str,
                config: str | None) -> NoReturn:
    resume = _resume_hint(ref, thread_id, config=config)
    hint = f"thread {thread_id}; after fixing the cause, resume with: {resume}"
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
    interactive: bool, config: str | None,
) -> None:
    """The final state on stdout; thread and resume hints beside it (stderr if piped)."""
    out = _stdout()
    info = out if interactive else _stderr()
    state = {k: v for k, v in final.items() if k != "__interrupt__"} if isinstance(final, dict) \
        else final
    _pretty_json(out, state)
    _hints(info, interrupts, next_nodes, ref, thread_id, config)


def _hints(info: Console, interrupts: list[Any], next_nodes: tuple[str, ...], ref: str,
           thread_id: str, config: str | None) -> None:
    """The thread, and the command that continues it if the run stopped before its end."""
    info.print(Text.assemble(("thread: ", "bold"), thread_id))
    if interrupts:
        for intr in interrupts:
            value = getattr(intr, "value", intr)
            info.print(Text.assemble(
                ("interrupted: ", "bold magenta"), _json_line(value),
            ))
        info.print(Text.assemble(
            ("resume with: ", "bold"), _resume_hint(ref, thread_id, value=True, config=config),
        ))
    elif next_nodes:
        info.print(Text.assemble(("paused before: ", "bold magenta"), ", ".join(next_nodes)))
        info.print(Text.assemble(("continue with: ", "bold"),
                                 _resume_hint(ref, thread_id, config=config)))


def _compile(ref: str, thread_id: str, settings: Any, graph_id: str | None) -> Any:
    """``ref``'s graph on treadle; a factory taking a ServerRuntime gets one for executing
    a run (``threads.create_run``), whose store is the run's."""
    import treadle
    from treadle.graphs.refs import load_factory, load_graph
    from treadle.store import shared
    from treadle.store.memory import TreadleStore

    config = {"configurable": {"thread_id": thread_id}}
    factory = load_factory(ref)
    if factory is None or factory.runtime_param is None:
        graph = load_graph(ref, config=config, access_context="threads.create_run")
        return treadle.compile(graph, settings=settings, graph_id=graph_id)
    memory = TreadleStore(shared.acquire(settings.store, settings))
    try:
        graph = load_graph(ref, config=config, access_context="threads.create_run", store=memory)
        return treadle.compile(graph, settings=settings, graph_id=graph_id)
    finally:
        shared.release(settings.store)  # the compiled graph holds the store from now on
