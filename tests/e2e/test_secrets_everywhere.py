"""Secrets stay secret, end to end: `treadle serve` and a `treadle worker` on PostgreSQL
through a password-bearing URL, every secret the process knows set to a marker (the
database password, an API key, a JWT, the JWT and webhook secrets, the AES key). The test
provokes what prints: a node failing with every marker in its message and its log line,
bad database credentials, a store that does not answer, `--debug` tracebacks, requests
carrying the API key and the JWT in headers and query strings, /info, /metrics and the
error pages. Then it reads ALL of it (every response, every stdout/stderr, every log
file) and none of the markers may be there."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from processes import StartServer, StartWorker, subprocess_env, terminate

SPILL = Path(__file__).resolve().parent / "graphs" / "spill.py"
FAST = ["--lease-ttl", "2", "--poll-interval", "0.05"]

DB_PASSWORD = "Marker-DbPw-7c41e9"
API_KEY = "tdl_mkey01_" + "TWFya2VyLWFwaS1rZXktc2VjcmV0LTAxMjM0NTY3ODk"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJtYXJrZXItdXNlciIsInRlbmFudCI6InQxIn0."
       "TWFya2VyLWp3dC1zaWduYXR1cmUtMDAx")
JWT_SECRET = "Marker-JwtSecret-2b9d0f"
WEBHOOK_SECRET = "Marker-WebhookSecret-51aa3c"
AES_KEY = "Marker-AesKey-32-bytes-long-0001"  # 32 bytes: a valid LANGGRAPH_AES_KEY
MARKERS = {"database password": DB_PASSWORD, "API key": API_KEY, "JWT": JWT,
           "JWT secret": JWT_SECRET, "webhook secret": WEBHOOK_SECRET, "AES key": AES_KEY}


@pytest.fixture
def secret_pg_url(pg_url: str) -> Iterator[str]:
    """``pg_url``'s database reached as a role of its own, whose password is the marker."""
    import psycopg
    from psycopg import sql

    role = f"treadle_secret_{secrets.token_hex(4)}"
    db = urlsplit(pg_url).path.lstrip("/")
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(DB_PASSWORD)))
        admin.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(
            sql.Identifier(db), sql.Identifier(role)))
        admin.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role)))
    parts = urlsplit(pg_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    try:
        yield urlunsplit(parts._replace(netloc=f"{role}:{DB_PASSWORD}@{host}"))
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _with_user(url: str, user: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    where = f"{host}:{port if port is not None else parts.port or 5432}"
    return urlunsplit(parts._replace(netloc=f"{user}:{DB_PASSWORD}@{where}"))


def _env(url: str) -> dict[str, str]:
    return {"SPILL_DB_URL": url, "SPILL_A": API_KEY, "SPILL_T": JWT,
            "TREADLE_JWT_SECRET": JWT_SECRET, "TREADLE_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "LANGGRAPH_AES_KEY": AES_KEY, "TREADLE_LOG_LEVEL": "debug"}


def _treadle(tmp_path: Path, env: dict[str, str], until: str, *args: str) -> None:
    """Run a CLI command that fails (or, for a worker, keeps retrying) until it has printed
    ``until``; what it printed stays in a file of tmp_path (read at the end)."""
    out = tmp_path / f"cli-{len(list(tmp_path.glob('cli-*')))}.log"
    with out.open("wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "treadle", *args], cwd=tmp_path,
                                stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=subprocess_env(**env))
        deadline = time.monotonic() + 90
        while proc.poll() is None and until not in out.read_text(errors="replace"):
            assert time.monotonic() < deadline, out.read_text(errors="replace")
            time.sleep(0.1)
        terminate(proc, 10)
    assert until in out.read_text(errors="replace"), out.read_text(errors="replace")


def _requests(base: str, seen: list[str]) -> None:
    """Runs that fail, and requests carrying credentials, to every kind of page."""
    creds = {"x-api-key": API_KEY, "Authorization": f"Bearer {JWT}"}
    query = {"api_key": API_KEY, "access_token": JWT, "token": JWT}
    with httpx.Client(base_url=base, timeout=60, headers=creds, params=query) as http:
        def keep(r: httpx.Response) -> httpx.Response:
            seen.append(f"{r.request.method} {r.request.url.path} -> {r.status_code}\n"
                        f"{r.headers}\n{r.text}")
            return r

        thread_id = keep(http.post("/threads", json={})).json()["thread_id"]
        run = {"assistant_id": "spill", "input": {"question": "q"}}
        waited = keep(http.post(f"/threads/{thread_id}/runs/wait", json=run))
        assert waited.status_code == 200
        assert "tool failed" in waited.text  # the failure is reported, its secrets hidden
        run_id = waited.headers["Content-Location"].rsplit("/", 1)[-1]
        keep(http.get(f"/threads/{thread_id}/runs/{run_id}"))
        keep(http.get(f"/threads/{thread_id}/runs/{run_id}/join"))
        keep(http.get(f"/threads/{thread_id}"))
        keep(http.get(f"/threads/{thread_id}/state"))
        keep(http.post(f"/threads/{thread_id}/history", json={}))
        keep(http.post(f"/threads/{thread_id}/runs/stream",
                       json={**run, "stream_mode": ["values", "updates", "debug"]}))
        keep(http.post("/runs/wait", json=run))
        for path in ("/info", "/metrics", "/ok", "/readyz", "/openapi.json",
                     "/no/such/page", f"/threads/{thread_id}/runs/not-a-run",
                     "/threads/not-a-uuid", "/assistants/nope"):
            keep(http.get(path))
        keep(http.post("/threads", content=b"{not json"))
        keep(http.post(f"/threads/{thread_id}/runs", json={"assistant_id": "nope"}))


def test_no_secret_reaches_any_output(tmp_path: Path, secret_pg_url: str,
                                      start_server: StartServer,
                                      start_worker: StartWorker) -> None:
    env = _env(secret_pg_url)
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"spill": f"{SPILL}:graph"}}))
    server = start_server("serve", store=secret_pg_url, args=["--workers", "0"], env=env,
                          config=config)
    worker = start_worker(secret_pg_url, args=[*FAST, "--config", str(config)], env=env)
    seen: list[str] = []
    _requests(server.url, seen)
    deadline = time.monotonic() + 30
    while "tool failed" not in worker.log():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.05)
    # Bad credentials, a store that does not answer, --debug tracebacks.
    stranger = _with_user(secret_pg_url, "no_such_role_here")
    nowhere = _with_user(secret_pg_url, "app", port=1)
    _treadle(tmp_path, env, "no_such_role_here", "--debug", "runs", "list", "--store",
             stranger)
    _treadle(tmp_path, env, "Traceback", "--debug", "threads", "list", "--store", nowhere)
    _treadle(tmp_path, env, "no_such_role_here", "--debug", "worker", "--store", stranger,
             "--config", str(config))
    _treadle(tmp_path, env, "error", "serve", "--store", nowhere, "--config", str(config),
             "--port", "0")
    _treadle(tmp_path, env, "Traceback", "--debug", "run", "spill", "--config", str(config),
             "--store", secret_pg_url, "--input", "{}")
    server.stop()
    worker.stop()
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p != config)
    assert any(p.name.startswith("server") for p in files) and \
        any(p.name.startswith("worker") for p in files)
    outputs = {f"file {p.name}": p.read_text(errors="replace") for p in files}
    outputs |= {f"output {i}": text for i, text in enumerate(seen)}
    everything = "\n".join(outputs.values())
    # What was provoked is there to read (the test reads real failures, not silence)...
    assert "Traceback (most recent call last)" in everything
    assert "tool failed: cannot reach postgresql://" in everything
    assert "no_such_role_here" in everything
    # ...and no marker anywhere.
    leaks = [f"{what} in {where}: ...{_around(text, marker)}..."
             for where, text in outputs.items() for what, marker in MARKERS.items()
             if marker in text]
    assert leaks == [], "\n".join(leaks)


def _around(text: str, marker: str) -> str:
    at = text.index(marker)
    return text[max(0, at - 300):at + len(marker) + 100]
