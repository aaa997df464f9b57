"""Fixtures shared by every test folder.

PostgreSQL: ``pg_url`` is the URL of a fresh, empty database, dropped after the test.
The server is ``TREADLE_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
if it cannot be reached and ``initdb``/``pg_ctl`` are installed, a throwaway cluster is
started for the session. With neither, tests needing PostgreSQL skip — or fail when
``CI=true``, so a CI job can never pass without running them.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from processes import (
    SERVER_GRAPHS,
    ServerProcess,
    StartServer,
    StartWorker,
    WorkerProcess,
    running_server,
    subprocess_env,
)

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _pg_error(url: str) -> str | None:
    """None if ``url`` accepts connections, else why not."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=3).close()
    except psycopg.Error as exc:
        return " ".join(str(exc).split())
    return None


def _with_dbname(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


def _pg_bindir() -> Path | None:
    """A directory holding both initdb and pg_ctl: PATH first, then Debian's layout."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(bindir) / "initdb").exists() and (Path(bindir) / "pg_ctl").exists():
            return Path(bindir)
    return None


class _ThrowawayCluster:
    """A PostgreSQL cluster in a temporary directory on a free port, for one session."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="treadle-pg-"))
        self.data = self.dir / "data"
        self.user: str | None = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            import pwd

            for name in ("postgres", "nobody"):
                try:
                    entry = pwd.getpwnam(name)
                except KeyError:
                    continue
                self.user = name
                os.chown(self.dir, entry.pw_uid, entry.pw_gid)
                break
            else:
                raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run as")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        argv = [str(self.bindir / cmd[0]), *cmd[1:]]
        if self.user is not None:
            if shutil.which("runuser"):
                argv = ["runuser", "-u", self.user, "--", *argv]
            else:
                argv = ["su", self.user, "-s", "/bin/sh", "-c", shlex.join(argv)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:1])} failed: {done.stderr.strip() or done.stdout}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        self._start()

    def _start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def restart(self) -> None:
        """Stop the server (fast: clients are cut off) and start it again."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        self._start()

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a reachable PostgreSQL server (its maintenance database)."""
    url = os.environ.get("TREADLE_TEST_PG_URL") or DEFAULT_PG_URL
    error = _pg_error(url)
    if error is None:
        yield url
        return
    reasons = [f"{url.split('@')[-1]} is unreachable ({error})"]
    bindir = _pg_bindir()
    if bindir is None:
        reasons.append("no initdb/pg_ctl found in PATH or /usr/lib/postgresql/*/bin")
    else:
        cluster = _ThrowawayCluster(bindir)
        try:
            cluster.start()
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            cluster.stop()
            reasons.append(f"starting a throwaway cluster failed: {exc}")
        else:
            try:
                yield cluster.url
            finally:
                cluster.stop()
            return
    message = "PostgreSQL tests need a server: " + "; ".join(reasons) + (
        ". Set TREADLE_TEST_PG_URL or install PostgreSQL."
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pgvector_server_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL server with the pgvector extension available: the
    PostgreSQL and pgvector builds the ``pgserver`` wheel ships (test extra), copied where the
    server's user can read them and started on a free port for the session. Fails under
    CI=true, skips elsewhere, when the wheel is missing."""
    import importlib.util

    spec = importlib.util.find_spec("pgserver")  # located, not imported (no side effects)
    locations = list(spec.submodule_search_locations or []) if spec else []
    install = Path(locations[0]) / "pginstall" if locations else None
    if install is None or not (install / "lib" / "postgresql" / "vector.so").exists():
        import platform
        import sys

        wheel = sys.platform == "darwin" or (sys.platform == "linux"
                                             and platform.machine() == "x86_64")
        if not wheel:  # pyproject's marker: no pgserver wheel exists for this platform
            pytest.skip(f"no pgserver wheel (PostgreSQL + pgvector) for {sys.platform} "
                        f"{platform.machine()}: the pgvector tests run on Linux x86_64 and macOS")
        message = "pgvector tests need the pgserver wheel: pip install -e '.[test]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    copy = Path(tempfile.mkdtemp(prefix="treadle-pgvector-"))
    os.chmod(copy, 0o755)  # the server's user (postgres when running as root) reads it
    shutil.copytree(install, copy / "pgserver" / "pginstall", symlinks=True)
    libs = install.parent.parent / "pgserver.libs"  # the wheel's libraries ($ORIGIN rpath)
    if libs.exists():
        shutil.copytree(libs, copy / "pgserver.libs", symlinks=True)
    cluster = _ThrowawayCluster(copy / "pgserver" / "pginstall" / "bin")
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()
        shutil.rmtree(copy, ignore_errors=True)


@pytest.fixture
def pgvector_url(pgvector_server_url: str) -> Iterator[str]:
    """A fresh database on the pgvector server, with ``CREATE EXTENSION vector`` done."""
    import psycopg
    from psycopg import sql

    name = f"treadle_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pgvector_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = _with_dbname(pgvector_server_url, name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION vector")
    try:
        yield url
    finally:
        with psycopg.connect(pgvector_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty database on the test server; dropped after the test.

    Falls back to a fresh schema (via ``options=-csearch_path=...``) when the
    server's user may not create databases.
    """
    import psycopg
    from psycopg import sql

    name = f"treadle_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        try:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            schema = True
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        else:
            schema = False
    if schema:
        parts = urlsplit(pg_server_url)
        query = "&".join(filter(None, [parts.query, f"options=-csearch_path%3D{name}"]))
        url = urlunsplit(parts._replace(query=query))
    else:
        url = _with_dbname(pg_server_url, name)
    try:
        yield url
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            if schema:
                admin.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
                )
            else:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """``start_worker(url, *graphs, args=[...], env={...}, ready=True)`` -> WorkerProcess."""
    started: list[WorkerProcess] = []

    def start(url: str, *graphs: str, args: list[str] | None = None,
              env: dict[str, str] | None = None, ready: bool = True) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        w = WorkerProcess(url, list(graphs), log, list(args or []), subprocess_env(**(env or {})))
        started.append(w)
        if ready:
            w.wait_ready()
        return w

    yield start
    for w in started:
        w.stop(timeout=5)


@pytest.fixture
def private_pg() -> Iterator[_ThrowawayCluster]:
    """A PostgreSQL server of this test's own (initdb + pg_ctl), which it may restart."""
    bindir = _pg_bindir()
    if bindir is None:
        message = "needs initdb and pg_ctl (PostgreSQL server binaries) to start a private server"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cluster = _ThrowawayCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[StartServer]:
    """``start_server(command="dev", store=None, args=[...], env={...})`` -> ServerProcess."""
    started: list[ServerProcess] = []

    def start(command: str = "dev", store: str | None = None, args: list[str] | None = None,
              env: dict[str, str] | None = None, config: Path | None = None,
              ready: bool = True) -> ServerProcess:
        store = store or f"sqlite:///{tmp_path / 'server.db'}"
        log = tmp_path / f"server-{len(started)}.log"
        s = ServerProcess(command, store, log, list(args or []),
                          subprocess_env(**{"TREADLE_LEASE_TTL": "3", **(env or {})}),
                          config or SERVER_GRAPHS / "langgraph.json")
        started.append(s)
        if ready:
            s.wait_ready()
        return s

    yield start
    for s in started:
        s.stop(timeout=10)


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A `treadle dev` serving tests/server_graphs on a fresh SQLite file (one per module)."""
    with running_server(tmp_path_factory.mktemp("dev-server"), SERVER_GRAPHS / "langgraph.json",
                        TREADLE_LEASE_TTL="3") as server:
        yield server
