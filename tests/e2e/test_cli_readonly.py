"""Read-only commands (`threads list|show`, `runs list|show|cancel`, `audit list|verify`)
given a store that does not exist say so in one line and exit 1; they never create it (no
file, no directory, no schema). The real CLI, as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from processes import subprocess_env

COMMANDS = {
    "threads list": ["threads", "list"],
    "threads show": ["threads", "show", "t-1"],
    "runs list": ["runs", "list"],
    "runs show": ["runs", "show", "r-1"],
    "runs cancel": ["runs", "cancel", "r-1"],
    "audit list": ["audit", "list"],
    "audit verify": ["audit", "verify"],
}


def _treadle(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("TREADLE_")}
    return subprocess.run([sys.executable, "-m", "treadle", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=120, stdin=subprocess.DEVNULL)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert result.stdout == "" and "Traceback" not in result.stderr, result
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: no treadle store at "), line
    assert "pass --store (or TREADLE_STORE)" in line, line
    return line


def test_missing_sqlite_stores_are_reported_not_created(tmp_path: Path) -> None:
    calls = {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for name, args in COMMANDS.items():
            for where in ("flag", "default"):
                cwd = tmp_path / f"{name.replace(' ', '-')}-{where}"
                cwd.mkdir()
                extra = ["--store", "sqlite:///nope/x.db"] if where == "flag" else []
                calls[name, where] = (cwd, pool.submit(_treadle, cwd, *args, *extra))
    for (name, where), (cwd, future) in calls.items():
        line = _one_line(future.result())
        shown = "sqlite:///nope/x.db" if where == "flag" else "sqlite:///.treadle/treadle.db"
        assert f"at {shown}:" in line, (name, where, line)
        assert list(cwd.iterdir()) == [], (name, where)  # neither nope/ nor .treadle/


def test_a_database_without_treadle_tables_is_not_migrated(pg_url: str, tmp_path: Path) -> None:
    result = _treadle(tmp_path, "runs", "list", "--store", pg_url)
    _one_line(result)
    with psycopg.connect(pg_url) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            " AND table_name LIKE 'treadle%'"
        ).fetchone()
    assert tables == (0,)


@pytest.mark.parametrize("args", [["threads", "list"], ["runs", "list"], ["audit", "list"]])
def test_an_existing_store_is_read(tmp_path: Path, args: list[str]) -> None:
    created = _treadle(tmp_path, "migrate", "--store", "sqlite:///s.db")
    assert created.returncode == 0, created.stderr
    shown = _treadle(tmp_path, *args, "--store", "sqlite:///s.db")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(("no threads", "no runs", "no audit records")), shown.stdout
