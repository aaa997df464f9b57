"""What a client cannot do to a real `treadle dev` / `treadle serve` (a red-team pass).

A client cannot choose where the server writes: ``checkpoint_store``, ``runtime`` other
than "local" and LangGraph's / treadle's internal ``__pregel_*`` / ``__treadle_*`` keys are
refused (400 naming the key) in every config a client sends or an assistant stored. Input
the store cannot hold (too deep, NaN, Infinity, ``1e400``, over-long ids, keys and
namespaces, NUL in a query parameter, a TTL past any date) is a 422 naming the field, on
SQLite and PostgreSQL, and nothing is written. A poison row stored before these checks
cannot make a search fail.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

pytestmark = pytest.mark.timeout(180)

YEARLY = "0 0 1 1 *"


def _deep(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(levels):
        doc = {"a": doc}
    return doc


# --- a client cannot steer where the server writes --------------------------------------
def _steering_configs(target: Path) -> list[tuple[dict[str, Any], str]]:
    """(config, the key the answer names) a client might send."""
    url = f"sqlite:///{target}"
    return [
        ({"checkpoint_store": url}, "config.checkpoint_store"),
        ({"configurable": {"checkpoint_store": url}}, "config.configurable.checkpoint_store"),
        ({"configurable": {"checkpoint_store": "postgresql://postgres@127.0.0.1:5432/postgres"}},
         "config.configurable.checkpoint_store"),
        ({"configurable": {"checkpoint_store": "postgresql://x:secret@10.255.255.1/db"}},
         "config.configurable.checkpoint_store"),
        ({"runtime": "distributed"}, "config.runtime"),
        ({"configurable": {"__pregel_checkpointer": "x"}}, "config.configurable.__pregel_checkpointer"),
        ({"configurable": {"__treadle_epoch": "x"}}, "config.configurable.__treadle_epoch"),
    ]


def test_a_client_cannot_choose_where_the_server_writes(start_server: Any, tmp_path: Path) -> None:
    server = start_server()
    target = tmp_path / "chosen-by-client.db"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        assert http.post(f"/threads/{thread}/runs/wait",
                         json={"assistant_id": "chain", "input": {"n": 0}}).json() == {"n": 10}
        cron = http.post("/runs/crons", json={"assistant_id": "chain", "schedule": YEARLY}
                         ).json()["cron_id"]
        before = (http.post("/threads/count", json={}).json(),
                  http.post("/assistants/count", json={}).json(),
                  http.get(f"/threads/{thread}/runs").json(), http.get(f"/threads/{thread}").json())
        for config, key in _steering_configs(target):
            run = {"assistant_id": "chain", "input": {"n": 0}, "config": config}
            checkpoint = config.get("configurable", config)
            requests: list[tuple[str, str, Any, str]] = [
                ("POST", f"/threads/{thread}/runs", run, key),
                ("POST", f"/threads/{thread}/runs/wait", run, key),
                ("POST", f"/threads/{thread}/runs/stream", run, key),
                ("POST", "/runs", run, key),
                ("POST", "/runs/wait", run, key),
                ("POST", "/runs/stream", run, key),
                ("POST", "/runs/batch", [{"assistant_id": "chain"}, run], key),
                ("POST", f"/threads/{thread}/runs/crons", {**run, "schedule": YEARLY}, key),
                ("POST", "/runs/crons", {**run, "schedule": YEARLY}, key),
                ("PATCH", f"/runs/crons/{cron}", {"config": config}, key),
                ("POST", "/assistants", {"graph_id": "chain", "config": config}, key),
                ("PATCH", "/assistants/chain", {"config": config}, key),
                ("POST", f"/threads/{thread}/state",
                 {"values": {"n": 1}, "checkpoint": checkpoint}, "checkpoint."),
                ("POST", f"/threads/{thread}/state/checkpoint", {"checkpoint": checkpoint},
                 "checkpoint."),
                ("POST", f"/threads/{thread}/history", {"checkpoint": checkpoint}, "checkpoint."),
                ("POST", f"/threads/{thread}/history", {"before": checkpoint}, "checkpoint."),
            ]
            for method, path, body, named in requests:
                r = http.request(method, path, json=body)
                assert r.status_code == 400, (method, path, config, r.status_code, r.text)
                assert named in r.json()["detail"], r.text
                assert "secret" not in r.text
        after = (http.post("/threads/count", json={}).json(),
                 http.post("/assistants/count", json={}).json(),
                 http.get(f"/threads/{thread}/runs").json(), http.get(f"/threads/{thread}").json())
        assert after == before
        assert not target.exists()
        assert http.post("/runs/crons/search", json={}).json()[0]["payload"].get("config") is None
        # What only bounds the run's own work stays accepted.
        r = http.post(f"/threads/{thread}/runs/wait", json={
            "assistant_id": "chain", "input": {"n": 0},
            "config": {"runtime": "local", "max_concurrency": 2,
                       "configurable": {"max_workers": 2}}})
        assert r.status_code == 200 and r.json() == {"n": 10}, r.text


async def test_a_stored_assistant_cannot_steer_runs_either(start_server: Any, tmp_path: Path) -> None:
    """An assistant stored before the check (here written to the store directly) is
    refused when a run would use its config."""
    db = tmp_path / "server.db"
    server = start_server(store=f"sqlite:///{db}")
    target = tmp_path / "chosen-by-assistant.db"
    client = get_client(url=server.url)
    assistant = await client.assistants.create("chain")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE treadle_assistants SET config = ? WHERE assistant_id = ?",
                     (json.dumps({"configurable": {"checkpoint_store": f"sqlite:///{target}"}}),
                      assistant["assistant_id"]))
    with pytest.raises(httpx.HTTPStatusError, match="checkpoint_store") as refused:
        await client.runs.wait(None, assistant["assistant_id"], input={"n": 0})
    assert refused.value.response.status_code == 400
    assert not target.exists()


def test_a_run_queued_with_checkpoint_store_fails_saying_so(start_server: Any, tmp_path: Path
                                                            ) -> None:
    """A run queued before the API refused checkpoint_store (here, written to the queue
    directly) ends in an error naming checkpoint_store, not in "taken over by another
    worker", and writes nothing where it names."""
    from treadle.cluster.codec import decode, encode
    from treadle.store import open_store
    from treadle.store.queue import NewRun

    db = tmp_path / "server.db"
    server = start_server(store=f"sqlite:///{db}")
    target = tmp_path / "named-by-an-old-run.db"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        http.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "chain", "input": {"n": 0}})
        model = http.get(f"/threads/{thread}/runs").json()[0]["run_id"]
        store = open_store(f"sqlite:///{db}")
        try:
            row = store.get_run(model)
            assert row is not None
            payload = decode(row.payload)
            payload["config"]["configurable"]["checkpoint_store"] = f"sqlite:///{target}"
            queued = store.enqueue_run(NewRun(run_id=str(uuid.uuid4()), thread_id=thread,
                                              graph_id=row.graph_id, payload=encode(payload),
                                              max_attempts=1, stream=False, metadata="{}"))
        finally:
            store.close()
        run = http.get(f"/threads/{thread}/runs/{queued.run_id}/join").json()
        assert "checkpoint_store does not apply to a queued run" in run["__error__"]["message"]
        assert "taken over" not in json.dumps(run)
    assert not target.exists()


# --- input the store cannot hold: 422 at the edge, on both backends ----------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store_server(request: pytest.FixtureRequest, start_server: Any) -> Any:
    if request.param == "sqlite":
        return start_server()
    return start_server("serve", store=request.getfixturevalue("pg_url"))


def _raw(http: httpx.Client, method: str, path: str, body: str) -> httpx.Response:
    return http.request(method, path, content=body.encode(),
                        headers={"content-type": "application/json"})


def test_input_the_store_cannot_hold_is_422_naming_the_field(any_store_server: Any) -> None:
    with httpx.Client(base_url=any_store_server.url, timeout=30) as http:
        thread = http.post("/threads", json={"metadata": {"k": "v"}}).json()["thread_id"]
        http.put("/store/items", json={"namespace": ["a"], "key": "k", "value": {"v": 1}})

        def state() -> Any:
            return (http.post("/threads/count", json={}).json(),
                    http.post("/assistants/count", json={}).json(),
                    http.post("/runs/crons/count", json={}).json(),
                    http.get(f"/threads/{thread}").json(),
                    http.post("/store/items/search", json={"namespace_prefix": ["a"]}).json())

        before = state()
        deep = json.dumps({"metadata": _deep(600)})
        raw = [  # (method, path, body text, a word of the answer's loc or message)
            ("POST", "/threads", deep, "metadata"),
            ("POST", "/threads", '{"metadata": {"x": NaN}}', "x"),
            ("PATCH", f"/threads/{thread}", '{"metadata": {"x": Infinity}}', "x"),
            ("POST", "/threads", '{"metadata": {"x": -Infinity}}', "x"),
            ("POST", "/threads", '{"metadata": {"x": 1e400}}', "x"),
            ("POST", "/assistants", '{"graph_id": "chain", "metadata": {"x": NaN}}', "x"),
            ("POST", "/runs/wait", '{"assistant_id": "chain", "input": {"n": 1e400}}', "n"),
            ("POST", "/threads/search", '{"metadata": {"x": NaN}}', "x"),
            ("PUT", "/store/items", '{"namespace": ["a"], "key": "k", "value": {"v": NaN}}', "v"),
        ]
        for method, path, body, field in raw:
            r = _raw(http, method, path, body)
            assert r.status_code == 422, (method, path, r.status_code, r.text[:300])
            assert field in json.dumps(r.json()["detail"]), r.text[:300]
        long_id = "t" * 1_000_000
        shaped = [  # (method, path, JSON body, field)
            ("POST", "/threads", {"thread_id": long_id}, "thread_id"),
            ("POST", "/threads", {"thread_id": "t" * 257}, "thread_id"),
            ("POST", f"/threads/{'t' * 257}/runs/wait",
             {"assistant_id": "chain", "input": {"n": 0}, "if_not_exists": "create"}, "thread_id"),
            ("PUT", "/store/items", {"namespace": ["a"], "key": "k" * (1 << 20), "value": {}}, "key"),
            ("PUT", "/store/items", {"namespace": ["a"], "key": "k" * 1025, "value": {}}, "key"),
            ("PUT", "/store/items", {"namespace": ["l"] * 1000, "key": "k", "value": {}},
             "namespace"),
            ("PUT", "/store/items", {"namespace": ["n" * 1025], "key": "k", "value": {}},
             "namespace"),
            ("POST", "/store/items/search", {"namespace_prefix": ["l"] * 1000}, "namespace_prefix"),
            ("POST", "/store/namespaces", {"prefix": ["l"] * 1000}, "prefix"),
            ("PUT", "/store/items", {"namespace": ["a"], "key": "k", "value": {}, "ttl": 1e15},
             "ttl"),
        ]
        for method, path, payload, field in shaped:
            r = http.request(method, path, json=payload)
            assert r.status_code == 422, (method, path[:80], field, r.status_code, r.text[:300])
            assert field in json.dumps(r.json()["detail"]), r.text[:300]
        for params in [{"namespace": ".".join(["l"] * 1000), "key": "k"},
                       {"namespace": "a", "key": "k" * 1025}]:
            r = http.get("/store/items", params=params)
            assert r.status_code == 422, (r.status_code, r.text[:300])
        for path, params in [("/store/items", {"namespace": "a", "key": "k\x00"}),
                             (f"/threads/{thread}/history", {"limit": "1\x00"}),
                             ("/store/items", {"namespace": "a\x00", "key": "k"})]:
            r = http.get(path, params=params)
            assert r.status_code == 422, (path, params, r.status_code, r.text)
            assert "query" in json.dumps(r.json()["detail"]), r.text
        assert state() == before
        # Right at the limits is accepted.
        ok = http.post("/threads", json={"thread_id": "t" * 256, "metadata": _deep(90)})
        assert ok.status_code == 200, ok.text
        assert http.post("/threads/search", json={}).status_code == 200
        assert http.put("/store/items", json={"namespace": ["n"] * 32, "key": "k" * 1024,
                                              "value": {"v": 1}, "ttl": 60}).status_code == 204


def _write_metadata(store: str, thread_id: str, text: str) -> None:
    """Write a thread's metadata behind the API's back, as an older treadle or another
    program could have."""
    if store.startswith("sqlite:///"):
        with sqlite3.connect(store[len("sqlite:///"):]) as conn:
            conn.execute("UPDATE treadle_thread_records SET metadata = ? WHERE thread_id = ?",
                         (text, thread_id))
        return
    import psycopg

    with psycopg.connect(store, autocommit=True) as conn:
        conn.execute("UPDATE treadle_thread_records SET metadata = %s::jsonb WHERE thread_id = %s",
                     (text, thread_id))


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_poison_row_stored_earlier_cannot_fail_a_search(
        backend: str, start_server: Any, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Metadata nested 600 deep, or (SQLite, whose JSON text can hold it) NaN, written
    before the edge refused it reads as null there, and never makes a search answer 500."""
    store = (f"sqlite:///{tmp_path / 'server.db'}" if backend == "sqlite"
             else request.getfixturevalue("pg_url"))
    server = start_server("dev" if backend == "sqlite" else "serve", store=store)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        nan = http.post("/threads", json={"metadata": {"k": "v"}}).json()["thread_id"]
        deep = http.post("/threads", json={"metadata": {"k": "v"}}).json()["thread_id"]
        clean = http.post("/threads", json={"metadata": {"k": "v"}}).json()["thread_id"]
        _write_metadata(store, deep, json.dumps({"k": "v", "deep": _deep(600)}))
        if backend == "sqlite":
            _write_metadata(store, nan, '{"k":"v","x":NaN}')
        r = http.post("/threads/search", json={"metadata": {"k": "v"}, "limit": 100})
        assert r.status_code == 200, r.text[:300]
        matched = {t["thread_id"] for t in r.json()}
        # On SQLite the NaN row is not valid JSON to the database: it matches nothing.
        assert matched == ({deep, clean} if backend == "sqlite" else {nan, deep, clean})
        r = http.post("/threads/search", json={"limit": 100})
        assert r.status_code == 200, r.text[:300]
        found = {t["thread_id"]: t["metadata"] for t in r.json()}
        if backend == "sqlite":
            assert found[nan] == {"k": "v", "x": None}
        depth, level = 0, found[deep]["deep"]
        while isinstance(level, dict):
            depth, level = depth + 1, level.get("a")
        assert 100 < depth < 600  # cut where every encoder still works
        for thread_id in (nan, deep):
            assert http.get(f"/threads/{thread_id}").status_code == 200
        assert http.post("/threads/count", json={"metadata": {"k": "v"}}).status_code == 200


def test_thread_protocol_commands_meet_the_same_checks(start_server: Any, tmp_path: Path) -> None:
    """Commands of the thread protocol (over its WebSocket and its HTTP endpoint) meet the
    limits and config checks of every other body: nothing runs, nothing is written."""
    from websockets.sync.client import connect

    server = start_server()
    target = tmp_path / "chosen-over-the-socket.db"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        thread = http.post("/threads", json={}).json()["thread_id"]
        commands = [
            '{"id": 1, "method": "run.start", "params": {"assistant_id": "chain", '
            '"input": {"n": NaN}}}',
            json.dumps({"id": 2, "method": "run.start", "params": {
                "assistant_id": "chain", "input": {"n": 0},
                "config": {"configurable": {"checkpoint_store": f"sqlite:///{target}"}}}}),
            json.dumps({"id": 3, "method": "run.start", "params": {
                "assistant_id": "chain", "input": {"n": 0}, "metadata": _deep(600)}}),
        ]
        url = server.url.replace("http://", "ws://") + f"/threads/{thread}/stream/events"
        with connect(url, open_timeout=30) as socket:
            for command in commands:
                socket.send(command)
                answer = json.loads(socket.recv(timeout=30))
                assert answer["type"] == "error", answer
                assert answer["error"] == "invalid_argument", answer
        for command in commands:
            r = http.post(f"/threads/{thread}/commands", content=command.encode(),
                          headers={"content-type": "application/json"})
            assert r.status_code in (400, 422) or r.json().get("type") == "error", r.text[:300]
        assert http.get(f"/threads/{thread}/runs").json() == []
    assert not target.exists()
