"""The ``treadle`` command line: run graphs, run workers, inspect threads and runs, migrate,
render deployment manifests.

Errors print as one red line ``error: <message>`` on stderr and exit with code 1
(2 for usage errors); ``--debug`` (or ``TREADLE_DEBUG=1``) adds the traceback.
Every option has an environment twin (``--store`` / ``TREADLE_STORE``, ...).
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any, NoReturn

import typer

# Importing the command modules registers their commands on the app.
from treadle.cli import (  # noqa: E402,F401
    admin,
    audit_command,
    deploy,
    keys_command,
    run,
    runs_commands,
    server,
    threads_commands,
    worker_command,
)
from treadle.cli._app import _STATE, app
from treadle.cli._output import _error, _summary
from treadle.errors import TreadleError

__all__ = ["app", "main", "run_cli"]


# --- entry point ------------------------------------------------------------------------------


def _is_click_exception(exc: BaseException) -> bool:
    # typer >= 0.2x vendors click; older typers raise click's own: match by name.
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def _env_debug() -> bool:
    return os.environ.get("TREADLE_DEBUG", "").strip().lower() in ("1", "true", "yes", "on", "y")


def run_cli(args: list[str] | None = None) -> int:
    """Run the CLI on ``args`` (default ``sys.argv[1:]``); return the exit code."""
    argv = sys.argv[1:] if args is None else list(args)
    # --debug is global but accepted anywhere (before a "--"): `treadle run REF --debug`.
    cut = argv.index("--") if "--" in argv else len(argv)
    _STATE.debug = _env_debug() or "--debug" in argv[:cut]
    argv = [a for a in argv[:cut] if a != "--debug"] + argv[cut:]
    command = typer.main.get_command(app)
    _wrap_between_words()
    from treadle.logs import configure_plain_logging

    configure_plain_logging()  # log lines of node code print with their secrets hidden
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
        if _STATE.debug:  # a plain traceback (no local variables), its secrets hidden
            from treadle.redaction import redact

            sys.stderr.write(redact("".join(traceback.format_exception(exc))))
        if isinstance(exc, TreadleError):
            _error(str(exc) or type(exc).__name__)
        else:
            _error(f"{_summary(exc)} (run with --debug for the traceback)"
                   if not _STATE.debug else _summary(exc))
        return 1


def _wrap_between_words() -> None:
    """Help text wraps between words, never inside a hyphenated one: an option name cut
    in two (``--max-`` / ``workers``) cannot be read or copied. (The CLI's own process
    only: a program that imports treadle keeps click's default.)"""
    try:
        from typer._click import _textwrap  # typer's vendored click
    except ImportError:  # pragma: no cover - a typer that uses click itself
        from click import _textwrap  # type: ignore[no-redef]
    # textwrap splits at hyphens with wordsep_re; wordsep_simple_re splits at spaces only.
    _textwrap.TextWrapper.wordsep_re = _textwrap.TextWrapper.wordsep_simple_re


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


def exit_on_sigterm_as_pid1(pid: int | None = None) -> None:
    """In a container, ``treadle`` is often PID 1, and the kernel ignores SIGTERM for PID 1
    unless it has a handler: `treadle migrate` or `treadle run` would then sit out the whole
    grace period and be killed. Give SIGTERM its usual meaning (exit 143) there. Commands
    that handle SIGTERM themselves (serve, dev, worker: they drain) replace this handler."""
    if (os.getpid() if pid is None else pid) == 1 and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def main() -> NoReturn:
    """Console-script entry point (``treadle = "treadle.cli:main"``)."""
    exit_on_sigterm_as_pid1()
    sys.exit(run_cli())


if __name__ == "__main__":
    main()
