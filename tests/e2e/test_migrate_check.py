"""`treadle migrate --check [--wait SECONDS]`: what the pods' init container runs. It applies
nothing, says in one line whether this treadle can run on the store's schema, and waits for
the migrate Job (or the database) when asked."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from processes import subprocess_env


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in subprocess_env().items() if not k.startswith("TREADLE_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _treadle(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treadle", *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=120)


def _applied(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        try:
            return [r[0] for r in conn.execute("SELECT version FROM treadle_migrations")]
        except sqlite3.OperationalError:
            return []


def test_check_applies_nothing_and_says_why_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    url = f"sqlite:///{db}"
    missing = _treadle(tmp_path, "migrate", "--check", "--store", url)
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ")
    assert "run `treadle migrate --phase pre` first" in missing.stderr
    assert _applied(db) == []  # nothing applied
    assert _treadle(tmp_path, "migrate", "--store", url).returncode == 0
    ready = _treadle(tmp_path, "migrate", "--check", "--store", url)
    assert ready.returncode == 0, ready.stderr
    assert ready.stdout.startswith("schema version ") and "is ready for this treadle" in ready.stdout
    as_json = _treadle(tmp_path, "migrate", "--check", "--json", "--store", url)
    assert as_json.returncode == 0 and '"ready": true' in as_json.stdout


def test_check_wait_returns_once_the_migrations_are_applied(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    log = tmp_path / "wait.log"
    with open(log, "wb") as out:
        waiting = subprocess.Popen(
            [sys.executable, "-m", "treadle", "migrate", "--check", "--wait", "300",
             "--store", url], cwd=tmp_path, env=_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60  # a guard against hanging, not a speed claim
            while "waiting (up to" not in log.read_text() and time.monotonic() < deadline:
                assert waiting.poll() is None, log.read_text()
                time.sleep(0.05)
            assert waiting.poll() is None  # still waiting: nothing migrated it
            assert _treadle(tmp_path, "migrate", "--phase", "pre", "--store", url).returncode == 0
            assert waiting.wait(60) == 0, log.read_text()
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.wait()
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines  # one line while waiting (not one per attempt), one at the end
    assert "run `treadle migrate --phase pre` first" in lines[0]
    assert "is ready for this treadle" in lines[1]


def test_check_wait_gives_up_with_the_reason(tmp_path: Path) -> None:
    url = "postgresql://postgres@127.0.0.1:9/unreachable?connect_timeout=1"
    done = _treadle(tmp_path, "migrate", "--check", "--wait", "1", "--store", url)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0].startswith("waiting (up to 1s): cannot connect to PostgreSQL")
    assert lines[-1].startswith("error: cannot connect to PostgreSQL") and len(lines) == 2
    assert "Traceback" not in done.stderr


def test_wait_and_phase_go_with_check_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    wait = _treadle(tmp_path, "migrate", "--wait", "5", "--store", url)
    assert wait.returncode == 1 and "--wait goes with --check" in wait.stderr
    phase = _treadle(tmp_path, "migrate", "--check", "--phase", "pre", "--store", url)
    assert phase.returncode == 1 and "--check takes no --phase" in phase.stderr
    assert _applied(tmp_path / "t.db") == []
    twin = _treadle(tmp_path, "migrate", "--store", url, TREADLE_MIGRATE_CHECK="true")
    assert twin.returncode == 1 and "run `treadle migrate --phase pre` first" in twin.stderr


def test_check_wait_does_not_wait_for_what_no_job_will_fix(tmp_path: Path) -> None:
    """A schema newer than this treadle (an old image): no migrate Job fixes it; it fails
    at once (the 300 s wait would outlast the test's timeout)."""
    db = tmp_path / "t.db"
    url = f"sqlite:///{db}"
    assert _treadle(tmp_path, "migrate", "--store", url).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO treadle_migrations (version, name) VALUES (99, '0099_x.post.sql')")
    done = _treadle(tmp_path, "migrate", "--check", "--wait", "300", "--store", url)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert "upgrade treadle" in done.stderr
