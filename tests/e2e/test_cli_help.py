"""`treadle ... --help` is readable in an 80-column terminal, for every command: no line
longer than 80 characters, no option name cut or ellipsized, no summary truncated. The
commands are read from the CLI itself, so a new one is checked too."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import typer

from processes import subprocess_env
from treadle.cli import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))
CUT_WORD = re.compile(r"[A-Za-z]-$")  # "--max-" at a line's end, "workers" on the next


@pytest.fixture(scope="module")
def helps() -> dict[tuple[str, ...], subprocess.CompletedProcess[str]]:
    env = subprocess_env(COLUMNS="80")
    env.pop("TERMINAL_WIDTH", None)

    def show(path: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "treadle", *path, "--help"], env=env,
                              text=True, capture_output=True, timeout=120,
                              stdin=subprocess.DEVNULL)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip([p for p, _ in COMMANDS], pool.map(show, [p for p, _ in COMMANDS]),
                        strict=True))


def test_every_command_is_checked() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "run", "dev", "serve", "worker", "migrate", "threads list", "threads show",
            "runs list", "runs show", "runs cancel", "deploy k8s"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=lambda p: " ".join(p) or "treadle")
def test_help_fits_80_columns(helps: dict[tuple[str, ...], Any], path: tuple[str, ...]) -> None:
    result = helps[path]
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"Usage: treadle {' '.join(path)}".rstrip()), text
    assert "…" not in text and "╭" not in text, text
    for line in text.splitlines():
        assert len(line) <= 80, f"{len(line)} columns: {line!r}"
        assert not CUT_WORD.search(line), f"a word cut at its hyphen: {line!r}"
    command = dict(COMMANDS)[path]
    for param in command.params:
        for opt in [*param.opts, *param.secondary_opts]:
            if opt.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (opt, text)
    if "Commands:" in text:  # summaries are whole sentences, never cut with "..."
        listed = text.split("Commands:", 1)[1].splitlines()
        assert listed and not any(line.rstrip().endswith("...") for line in listed), text
