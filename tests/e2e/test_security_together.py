"""Issue 14's pieces together, through the real server and the official SDK.

* the audit log under a custom ``Auth`` (with default deny) and under the built-in auth:
  records carry the real actor and tenant (also a run's lifecycle records: the run's
  ``langgraph_auth_user_id``); ``/audit`` and ``/audit/verify`` answer 401 without
  credentials, 403 to a non-admin, 200 to an admin, and a tenant's admin reads only its
  tenant's records;
* a graph factory gets the authenticated user as ``runtime.user``;
* a `treadle worker` (PostgreSQL) sending a webhook checks its langgraph.json policy at
  send time and signs;
* built-in auth and encryption at rest on one server: two tenants isolated, their stamping
  intact, a secret in an encrypted metadata field absent from the SQLite file, and a
  search (or an auth filter) on an encrypted field refused clearly, never matched silently.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from langgraph_sdk.client import LangGraphClient

from processes import SERVER_GRAPHS, ServerProcess, StartServer, StartWorker, subprocess_env
from treadle.server import webhook_signature
from treadle.store import open_store
from treadle.store.cipher import generate_key

pytestmark = pytest.mark.timeout(240)

GRAPHS = Path(__file__).resolve().parent / "auth_graphs"
TOKENS = {"ann": "ann-token", "al": "al-token", "bea": "bea-token"}  # tenants_auth.py
SECRET = "cross-secret-7c1e55d0"
WEBHOOK_SECRET = "cross-webhook-secret"


def _stop(server: ServerProcess) -> None:
    server.stop(timeout=10)


async def _status(call: Any) -> int:
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    return 200


def _audit(url: str, headers: dict[str, str], path: str = "/audit",
           **params: Any) -> httpx.Response:
    return httpx.get(f"{url}{path}", headers=headers, params={"limit": 1000, **params},
                     timeout=30)


# --- a custom Auth (langgraph.json), default deny on ------------------------------------


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("cross-custom")
    server = ServerProcess("dev", f"sqlite:///{tmp / 'c.db'}", tmp / "server.log", [],
                           subprocess_env(TREADLE_AUTH_DEFAULT_DENY="true"),
                           GRAPHS / "langgraph_tenants.json")
    try:
        server.wait_ready()
        yield server
    finally:
        _stop(server)


def _as(server: ServerProcess, who: str) -> LangGraphClient:
    return get_client(url=server.url, api_key=None,
                      headers={"Authorization": f"Bearer {TOKENS[who]}"})


def _bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def test_audit_under_a_custom_auth(custom: ServerProcess) -> None:
    async def session() -> tuple[str, str, str]:
        al, bea = _as(custom, "al"), _as(custom, "bea")
        thread = await al.threads.create(metadata={"topic": "x"})
        run = await al.runs.create(thread["thread_id"], "whoami", input={"n": 1})
        out = await al.runs.join(thread["thread_id"], run["run_id"])
        assert out["who"] == "al"
        other = await bea.threads.create()
        # default deny: no handler covers crons
        assert await _status(al.crons.create("whoami", schedule="0 0 1 1 *")) == 403
        return thread["thread_id"], run["run_id"], other["thread_id"]

    thread, run, other = asyncio.run(session())
    for path in ("/audit", "/audit/verify"):
        assert _audit(custom.url, {}, path).status_code == 401
        assert _audit(custom.url, _bearer("al"), path).status_code == 403
        assert _audit(custom.url, _bearer("ann"), path).status_code == 200
    verdict = _audit(custom.url, _bearer("ann"), "/audit/verify").json()
    assert verdict["ok"] is True

    mine = _audit(custom.url, _bearer("ann")).json()["records"]
    assert mine and {r["tenant"] for r in mine} == {"a"}
    by = {(r["action"], r["resource_id"]): r for r in mine}
    created = by[("threads.create", thread)]
    assert (created["actor"], created["outcome"]) == ("al", "200")
    for event in ("runs.started", "runs.succeeded"):
        assert by[(event, run)]["actor"] == "al", event  # the run's langgraph_auth_user_id
        assert by[(event, run)]["tenant"] == "a"
    refused = [r for r in mine if r["action"].startswith("crons.")]
    assert refused and refused[0]["actor"] == "al" and "403" in str(refused[0]["outcome"])
    assert ("threads.create", other) not in by  # tenant b's

    theirs = _audit(custom.url, _bearer("bea")).json()["records"]
    assert {r["tenant"] for r in theirs} == {"b"}
    assert [r["actor"] for r in theirs if r["resource_id"] == other] == ["bea"]
    # asking for another tenant's records gives none
    assert _audit(custom.url, _bearer("bea"), tenant="a").json()["records"] == []


def test_a_graph_factory_gets_the_authenticated_user(custom: ServerProcess) -> None:
    async def session() -> tuple[dict[str, Any], dict[str, Any]]:
        al = _as(custom, "al")
        thread = await al.threads.create()
        out = cast(dict[str, Any], await al.runs.wait(thread["thread_id"], "mine",
                                                      input={"n": 0}))
        schemas = cast(dict[str, Any], await al.assistants.get_schemas("mine"))
        state = cast(dict[str, Any], await al.threads.get_state(thread["thread_id"]))
        assert schemas["graph_id"] == "mine"
        return out, state

    out, state = asyncio.run(session())
    assert (out["built_for"], out["access_context"]) == ("al", "threads.create_run")
    assert state["values"]["built_for"] == "al"
    built = {line.split("factory-user: ", 1)[1] for line in custom.log().splitlines()
             if "factory-user: " in line}
    assert {"built for nobody in assistants.read",  # the load at start: no request
            "built for al in threads.create_run", "built for al in assistants.read",
            "built for al in threads.read"} <= built, built


# --- built-in auth + encryption at rest -------------------------------------------------


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[ServerProcess, dict[str, str], dict[str, str], Path]]:
    tmp = tmp_path_factory.mktemp("cross-sealed")
    db = tmp / "s.db"
    store = open_store(f"sqlite:///{db}")
    try:
        made = {f"{t}:{r}": store.create_api_key(t, r, f"{t} {r}")
                for t in ("acme", "beta") for r in ("runner", "admin")}
    finally:
        store.close()
    keys = {who: key for who, (_, key) in made.items()}
    ids = {who: rec.key_id for who, (rec, _) in made.items()}
    server = ServerProcess("dev", f"sqlite:///{db}", tmp / "server.log", [], subprocess_env(
        TREADLE_AUTH="builtin", TREADLE_ENCRYPTION_KEYS=f"k1:{generate_key()}",
        TREADLE_ENCRYPTED_METADATA_FIELDS="secret_note"), SERVER_GRAPHS / "langgraph.json")
    try:
        server.wait_ready()
        yield server, keys, ids, db
    finally:
        _stop(server)


def test_builtin_auth_with_encryption_at_rest(
        sealed: tuple[ServerProcess, dict[str, str], dict[str, str], Path]) -> None:
    server, keys, ids, db = sealed

    def sdk(who: str) -> LangGraphClient:
        return get_client(url=server.url, api_key=keys[who])

    async def session() -> tuple[str, str]:
        acme, beta = sdk("acme:runner"), sdk("beta:runner")
        thread = await acme.threads.create(metadata={"secret_note": SECRET, "topic": "t"})
        tid = thread["thread_id"]
        stamped = thread["metadata"] or {}
        assert stamped["tenant_id"] == "acme"
        assert stamped["secret_note"] == SECRET  # opened on the way out
        run = await acme.runs.create(tid, "chain", input={"n": 0})
        assert await acme.runs.join(tid, run["run_id"]) == {"n": 10}
        theirs = await beta.threads.create(metadata={"topic": "t"})
        # isolation with encryption on: the tenant filter still runs in SQL
        assert await _status(beta.threads.get(tid)) == 404
        assert [t["thread_id"] for t in await beta.threads.search(metadata={"topic": "t"})] \
            == [theirs["thread_id"]]
        assert [t["thread_id"] for t in await acme.threads.search(metadata={"topic": "t"})] \
            == [tid]
        got = cast(dict[str, Any], await acme.threads.get(tid))
        assert got["metadata"]["secret_note"] == SECRET
        # an encrypted field cannot be compared in SQL: refused, not an empty answer
        try:
            await acme.threads.search(metadata={"secret_note": SECRET})
        except httpx.HTTPStatusError as exc:
            assert exc.response.status_code == 422
            assert "TREADLE_ENCRYPTED_METADATA_FIELDS" in exc.response.text
            assert SECRET not in exc.response.text
        else:
            raise AssertionError("a search on an encrypted metadata field was answered")
        return tid, run["run_id"]

    tid, run = asyncio.run(session())

    headers = {"x-api-key": keys["acme:admin"]}
    assert _audit(server.url, {}).status_code == 401
    assert _audit(server.url, {"x-api-key": keys["acme:runner"]}).status_code == 403
    assert _audit(server.url, {"x-api-key": keys["acme:runner"]},
                  "/audit/verify").status_code == 403
    assert _audit(server.url, headers, "/audit/verify").json()["ok"] is True
    records = _audit(server.url, headers).json()["records"]
    assert {r["tenant"] for r in records} == {"acme"}
    by = {(r["action"], r["resource_id"]): r for r in records}
    assert by[("threads.create", tid)]["actor"] == ids["acme:runner"]
    assert by[("runs.started", run)]["actor"] == ids["acme:runner"]
    assert by[("runs.succeeded", run)]["tenant"] == "acme"
    beta = _audit(server.url, {"x-api-key": keys["beta:admin"]}).json()["records"]
    assert {r["tenant"] for r in beta} == {"beta"}
    assert all(r["resource_id"] != tid for r in beta)

    server.stop(timeout=10)
    raw = b"".join(p.read_bytes() for p in db.parent.iterdir()
                   if p.name.startswith(db.name) and p.is_file())
    assert SECRET.encode() not in raw
    assert b"acme" in raw  # the tenant stamp stays plaintext: it is what SQL filters on


def test_an_auth_filter_on_an_encrypted_field_fails_closed(tmp_path: Path) -> None:
    # A custom Auth filtering on tenant_id, with tenant_id encrypted: a clear 500, never a
    # silent allow (nor an empty answer that looks like "no threads").
    server = ServerProcess("dev", f"sqlite:///{tmp_path / 'f.db'}", tmp_path / "server.log", [],
                           subprocess_env(TREADLE_ENCRYPTION_KEYS=f"k1:{generate_key()}",
                                          TREADLE_ENCRYPTED_METADATA_FIELDS="tenant_id"),
                           GRAPHS / "langgraph_tenants.json")
    try:
        server.wait_ready()

        async def session() -> None:
            al = _as(server, "al")
            thread = await al.threads.create()  # creating stamps it: no filter involved
            for call in (al.threads.search(), al.threads.get(thread["thread_id"]),
                         al.threads.count()):
                try:
                    await call
                except httpx.HTTPStatusError as exc:
                    assert exc.response.status_code == 500
                    assert "TREADLE_ENCRYPTED_METADATA_FIELDS" in exc.response.text
                else:
                    raise AssertionError("an auth filter on an encrypted field was applied")

        asyncio.run(session())
    finally:
        _stop(server)

    # The built-in auth filters every query on tenant_id: it refuses to start instead.
    refused = ServerProcess("dev", f"sqlite:///{tmp_path / 'g.db'}", tmp_path / "g.log", [],
                            subprocess_env(TREADLE_AUTH="builtin",
                                           TREADLE_ENCRYPTION_KEYS=f"k1:{generate_key()}",
                                           TREADLE_ENCRYPTED_METADATA_FIELDS="tenant_id"),
                            SERVER_GRAPHS / "langgraph.json")
    try:
        with pytest.raises(AssertionError, match="server exited early"):
            refused.wait_ready()
        assert "TREADLE_ENCRYPTED_METADATA_FIELDS" in refused.log()
        assert "Traceback" not in refused.log()
    finally:
        _stop(refused)


# --- webhooks sent by a `treadle worker` (PostgreSQL) -----------------------------------


def _webhook_config(path: Path, url_policy: dict[str, Any]) -> Path:
    path.write_text(json.dumps({
        "dependencies": [str(SERVER_GRAPHS)],
        "graphs": {"chain": f"{SERVER_GRAPHS / 'graphs.py'}:chain"},
        "webhooks": {"url": url_policy}}))
    return path


def test_a_worker_sends_webhooks_under_its_policy_and_signs(
        start_server: StartServer, start_worker: StartWorker, pg_url: str,
        tmp_path: Path) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append((dict(self.headers.items()),
                             self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{srv.server_port}/hook"
    env = {"TREADLE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    try:
        # The API accepts the loopback receiver; the worker that sends is what checks again.
        api = start_server("serve", store=pg_url, args=["--workers", "0"], env=env,
                           config=_webhook_config(tmp_path / "api.json",
                                                  {"disable_loopback": False}))
        client = get_sync_client(url=api.url)
        strict = start_worker(pg_url, args=["--config", str(
            _webhook_config(tmp_path / "strict.json", {}))], env=env)  # loopback refused
        thread = client.threads.create()
        refused = client.runs.create(thread["thread_id"], "chain", input={"n": 0}, webhook=hook)
        assert client.runs.join(thread["thread_id"], refused["run_id"]) == {"n": 10}
        said = (f"for run {refused['run_id']} failed after 1 attempt(s): webhook host "
                "127.0.0.1 is a loopback address")
        deadline = time.monotonic() + 30  # a guard against hanging, not a speed claim
        while said not in strict.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert said in strict.log()
        assert received == []
        strict.stop(timeout=10)

        start_worker(pg_url, args=["--config", str(_webhook_config(
            tmp_path / "open.json", {"disable_loopback": False}))], env=env)
        sent = client.runs.create(thread["thread_id"], "chain", input={"n": 0}, webhook=hook)
        deadline = time.monotonic() + 30
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        [(headers, body)] = received
        assert webhook_signature.verify(WEBHOOK_SECRET.encode(), body,
                                        headers[webhook_signature.HEADER])
        assert json.loads(body)["run_id"] == sent["run_id"]
    finally:
        srv.shutdown()
        srv.server_close()
