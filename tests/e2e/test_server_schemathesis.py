"""Bad input against a real `treadle dev`: generated requests, then hand-written ones.

schemathesis reads the server's own OpenAPI document and sends every operation a bounded,
deterministic set of generated requests, valid and invalid; no answer may be a 5xx. Many
generated ids are swapped for ids that exist (an assistant, threads with a finished and an
interrupted run, a cron, a checkpoint) so that requests get past the 404. The
hand-written tests pin what bad input gets: 422 naming the field, 404 for an unknown id,
413 over ``TREADLE_MAX_BODY_BYTES``, and no write on any rejection.

``TREADLE_TEST_FUZZ_EXAMPLES`` (default 15) and ``TREADLE_TEST_FUZZ_SEED`` widen or vary
the generated run, e.g. for a long exploratory run before a release.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from processes import SERVER_GRAPHS, ServerProcess, subprocess_env

pytestmark = pytest.mark.timeout(300)

# Examples per operation and phase: enough to find the 5xx of a careless handler, few
# enough that the generated test takes about a minute.
MAX_EXAMPLES = int(os.environ.get("TREADLE_TEST_FUZZ_EXAMPLES", "15"))
SEED = int(os.environ.get("TREADLE_TEST_FUZZ_SEED", "20240611"))
# The graphs generated runs may use: they end in milliseconds ("slow" would sleep for as
# long as its generated input says).
FAST_GRAPHS = ("chain", "approval")
# Streams that follow a thread until the client leaves: read for a moment, then hang up.
ENDLESS_STREAMS = r"^/threads/\{thread_id\}/stream(/events)?$"
BODY_LIMIT = 4096
ID_FIELDS = ("assistant_id", "thread_id", "checkpoint_id", "cron_id", "run_id", "key")


def _deep(levels: int) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for _ in range(levels):
        doc = {"a": doc}
    return doc


# --- generated requests -----------------------------------------------------------------
@dataclass
class Seeds:
    """Ids that exist on the server. DELETE gets ``victims`` of its own, so the ids the
    other operations use survive whatever order the operations run in."""

    ids: dict[str, list[str]]
    victims: dict[str, list[str]]


def _seed(url: str) -> Seeds:
    with httpx.Client(base_url=url, timeout=30) as http:

        def post(path: str, body: Any) -> Any:
            r = http.post(path, json=body)
            assert r.status_code == 200, (path, r.status_code, r.text)
            return r.json()

        def thread_with_run(graph: str, run_input: Any) -> tuple[str, str]:
            thread_id = post("/threads", {})["thread_id"]
            post(f"/threads/{thread_id}/runs/wait", {"assistant_id": graph, "input": run_input})
            return thread_id, str(http.get(f"/threads/{thread_id}/runs").json()[0]["run_id"])

        assistant = post("/assistants", {"graph_id": "chain", "name": "fuzzed"})["assistant_id"]
        victim_assistant = post("/assistants", {"graph_id": "chain"})["assistant_id"]
        done, run = thread_with_run("chain", {"n": 1})
        waiting, _ = thread_with_run("approval", {"request": "x"})
        victim_thread, victim_run = thread_with_run("chain", {"n": 2})
        checkpoint = http.get(f"/threads/{done}/state").json()["checkpoint"]["checkpoint_id"]
        yearly = {"assistant_id": "chain", "schedule": "0 0 1 1 *", "input": {"n": 0}}
        cron = post(f"/threads/{done}/runs/crons", yearly)["cron_id"]
        victim_cron = post("/runs/crons", yearly)["cron_id"]
    return Seeds(
        ids={"assistant_id": [assistant, *FAST_GRAPHS], "thread_id": [done, waiting],
             "run_id": [run], "cron_id": [cron], "checkpoint_id": [checkpoint]},
        victims={"assistant_id": [victim_assistant], "thread_id": [victim_thread],
                 "run_id": [victim_run], "cron_id": [victim_cron]},
    )


@pytest.fixture(scope="module")
def api(dev_server: ServerProcess) -> Any:
    seeds = _seed(dev_server.url)
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "request-timeout": 30,
        "operations": [{"include-path-regex": ENDLESS_STREAMS, "request-timeout": 0.5,
                        "max-stream-events": 5}],
    })
    schema = schemathesis.openapi.from_url(f"{dev_server.url}/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: Any) -> Any:
        if not isinstance(path_parameters, dict):
            return st.just(path_parameters)
        known = seeds.victims if context.operation.method.upper() == "DELETE" else seeds.ids
        return st.fixed_dictionaries({
            name: st.sampled_from([value, *known[name]]) if name in known else st.just(value)
            for name, value in path_parameters.items()
        })

    @schema.hook
    def flatmap_body(context: Any, body: Any) -> Any:
        options = [body]
        if isinstance(body, dict):
            for name, real in (("assistant_id", seeds.ids["assistant_id"]),
                               ("graph_id", FAST_GRAPHS), ("thread_id", seeds.ids["thread_id"])):
                if isinstance(body.get(name), str):
                    options += [{**body, name: value} for value in real]
            # What the store cannot hold (see treadle.server.limits): every operation with a
            # body also meets a too-deep document, and an over-long id where it takes one.
            options.append({**body, "metadata": _deep(600)})
            options += [{**body, name: "i" * 100_000} for name in ID_FIELDS if name in body]
        return st.sampled_from(options)

    return schema


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: Any) -> None:
    case.call_and_validate(checks=[not_a_server_error])


# --- hand-written bad input -------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server of these tests' own (nothing else writes to it), with a small body limit."""
    tmp = Path(tmp_path_factory.mktemp("bad-input"))
    env = subprocess_env(TREADLE_LEASE_TTL="3", TREADLE_MAX_BODY_BYTES=str(BODY_LIMIT))
    s = ServerProcess("dev", f"sqlite:///{tmp / 'dev.db'}", tmp / "server.log", [], env,
                      SERVER_GRAPHS / "langgraph.json")
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop(timeout=10)


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def known(http: httpx.Client) -> dict[str, str]:
    """A thread with a finished run of "chain", and that run's id."""
    thread_id = http.post("/threads", json={}).json()["thread_id"]
    r = http.post(f"/threads/{thread_id}/runs/wait", json={"assistant_id": "chain", "input": {"n": 0}})
    assert r.json() == {"n": 10}
    run_id = http.get(f"/threads/{thread_id}/runs").json()[0]["run_id"]
    return {"thread_id": thread_id, "run_id": run_id}


def _snapshot(http: httpx.Client, known: dict[str, str]) -> dict[str, Any]:
    """Everything a rejected request might have written."""
    thread = f"/threads/{known['thread_id']}"
    return {
        "threads": http.post("/threads/count", json={}).json(),
        "assistants": http.post("/assistants/count", json={}).json(),
        "crons": http.post("/runs/crons/count", json={}).json(),
        "thread": http.get(thread).json(),
        "runs": http.get(f"{thread}/runs", params={"limit": 1000}).json(),
        "state": http.get(f"{thread}/state").json(),
        "chain": http.get("/assistants/chain").json(),
    }


@contextlib.contextmanager
def _writes_nothing(http: httpx.Client, known: dict[str, str]) -> Iterator[None]:
    before = _snapshot(http, known)
    yield
    assert _snapshot(http, known) == before


def _send(http: httpx.Client, method: str, path: str, body: Any = None, **kwargs: Any
          ) -> httpx.Response:
    if body is not None:
        kwargs["json"] = body
    return http.request(method, path, **kwargs)


def test_malformed_json_is_422(http: httpx.Client, known: dict[str, str]) -> None:
    thread = f"/threads/{known['thread_id']}"
    with _writes_nothing(http, known):
        for method, path in [("POST", "/threads"), ("POST", "/assistants"), ("PATCH", thread),
                             ("POST", f"{thread}/runs"), ("POST", "/runs/wait"),
                             ("POST", f"{thread}/state"), ("POST", "/runs/crons")]:
            r = http.request(method, path, content=b'{"metadata": {"a": 1,}',
                             headers={"content-type": "application/json"})
            assert r.status_code == 422, (method, path, r.text)
            assert r.json()["detail"][0]["type"] == "json_invalid", r.text


# (method, path, body, field named in the answer); {thread} is the known thread.
WRONG_TYPES = [
    ("POST", "/threads", {"metadata": "not-an-object"}, "metadata"),
    ("POST", "/threads", {"thread_id": 5}, "thread_id"),
    ("POST", "/threads", {"if_exists": "maybe"}, "if_exists"),
    ("PATCH", "{thread}", {"metadata": [1]}, "metadata"),
    ("POST", "/threads/search", {"limit": "ten"}, "limit"),
    ("POST", "/threads/search", {"offset": 2**64}, "offset"),
    ("POST", "/threads/prune", {"thread_ids": "x"}, "thread_ids"),
    ("POST", "/assistants", {"graph_id": 5}, "graph_id"),
    ("POST", "/assistants", {"graph_id": "chain", "config": {"configurable": 5}}, "config"),
    ("PATCH", "/assistants/chain", {"config": {"metadata": "x"}}, "config"),
    ("POST", "/assistants/search", {"offset": 2**63}, "offset"),
    ("POST", "/assistants/chain/latest", {"version": 2**40}, "version"),
    ("POST", "/assistants/chain/versions", {"offset": -1}, "offset"),
    ("POST", "{thread}/runs", {"assistant_id": "chain", "stream_mode": "everything"}, "stream_mode"),
    ("POST", "{thread}/runs", {"assistant_id": "chain", "config": {"configurable": [1]}}, "config"),
    ("POST", "{thread}/runs", {"assistant_id": "chain", "checkpoint": {"checkpoint_id": 5}},
     "checkpoint"),
    ("POST", "{thread}/runs/wait", {"assistant_id": "chain", "multitask_strategy": "x"},
     "multitask_strategy"),
    ("POST", "/runs/wait", {"assistant_id": ""}, "assistant_id"),
    ("POST", "/runs/batch", [{"assistant_id": 5}], "assistant_id"),
    ("POST", "{thread}/state", {"values": {"n": 1}, "checkpoint": {"checkpoint_ns": 7}},
     "checkpoint"),
    ("POST", "{thread}/state/checkpoint", {"checkpoint": "latest"}, "checkpoint"),
    ("POST", "{thread}/history", {"before": 5}, "before"),
    ("POST", "{thread}/history", {"before": {"configurable": 5}}, "before"),
    ("POST", "{thread}/history", {"checkpoint": {"checkpoint_map": 1}}, "checkpoint"),
    ("POST", "/runs/crons", {"assistant_id": "chain", "schedule": "0 0 1 1 *", "enabled": "x"},
     "enabled"),
    ("POST", "/runs/crons/search", {"offset": 2**64}, "offset"),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), WRONG_TYPES,
                         ids=[f"{m} {p} {f}" for m, p, _, f in WRONG_TYPES])
def test_wrong_type_is_422_naming_the_field(http: httpx.Client, known: dict[str, str], method: str,
                                            path: str, body: Any, field: str) -> None:
    path = path.replace("{thread}", f"/threads/{known['thread_id']}")
    with _writes_nothing(http, known):
        r = _send(http, method, path, body)
    assert r.status_code == 422, r.text
    assert any(field in map(str, d["loc"]) for d in r.json()["detail"]), r.text


def test_wrong_query_parameter_is_422_naming_it(http: httpx.Client, known: dict[str, str]) -> None:
    r = http.get(f"/threads/{known['thread_id']}/runs", params={"offset": 2**64})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "offset"], r.text


# Well-typed, and still not something the server can do: 422 with what to do instead.
NOT_DOABLE = [
    ("POST", "/threads", {"graph_id": "chain", "supersteps": [
        {"updates": [{"values": {"n": 1}, "as_node": "s0"}]},
        {"updates": [{"values": {"n": 2}, "as_node": "no-such-node"}]}]}, "supersteps[1]"),
    ("POST", "/threads", {"supersteps": [{"updates": [{"values": {}, "as_node": "s0"}]}]},
     "graph_id"),
    ("POST", "{thread}/state", {"values": {"n": 1}, "as_node": "no-such-node"}, "no-such-node"),
    ("POST", "{thread}/state", {"values": [1, 2]}, "Expected dict"),
    ("POST", "{thread}/runs", {"assistant_id": "chain", "input": {}, "command": {"resume": 1}},
     "either input or command"),
    ("POST", "/runs/crons", {"assistant_id": "chain", "schedule": "every day"}, "cron expression"),
    ("POST", "/runs/crons", {"assistant_id": "chain", "schedule": "0 0 31 2 *"}, "never fires"),
    ("POST", "/runs/crons", {"assistant_id": "chain", "schedule": "0 0 1 1 *",
                             "end_time": "9999-12-31T23:59:59-14:00"}, "out of range"),
    ("POST", "/runs/crons", {"assistant_id": "chain", "schedule": "0 0 1 1 *",
                             "timezone": "Mars/Olympus"}, "timezone"),
]


@pytest.mark.parametrize(("method", "path", "body", "says"), NOT_DOABLE,
                         ids=[f"{m} {p} {s}" for m, p, _, s in NOT_DOABLE])
def test_impossible_request_is_422_saying_why(http: httpx.Client, known: dict[str, str],
                                              method: str, path: str, body: Any, says: str) -> None:
    path = path.replace("{thread}", f"/threads/{known['thread_id']}")
    with _writes_nothing(http, known):
        r = _send(http, method, path, body)
    assert r.status_code == 422 and says in r.text, r.text


def test_text_that_is_not_unicode_is_422(http: httpx.Client, known: dict[str, str]) -> None:
    # Legal JSON (a lone UTF-16 surrogate escape) that no store or response can hold.
    with _writes_nothing(http, known):
        for path, body in [("/threads", b'{"metadata": {"a": "\\ud800"}}'),
                           ("/threads", b'{"thread_id": "\\udfff"}'),
                           ("/assistants", b'{"graph_id": "chain", "name": "\\ud800x"}')]:
            r = http.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, (path, r.text)


def test_nul_characters_and_huge_integers_are_422(http: httpx.Client, known: dict[str, str]) -> None:
    # NUL cannot be stored by PostgreSQL: refused the same way on every backend.
    with _writes_nothing(http, known):
        for path, body in [("/threads", b'{"metadata": {"a": "x\\u0000"}}'),
                           ("/assistants", b'{"graph_id": "chain", "name": "\\u0000"}')]:
            r = http.post(path, content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422 and "NUL" in r.text, (path, r.text)
        assert http.get("/threads/a%00b").status_code == 422
        huge = 2**64
        for path, payload in [("/store/items/search", {"limit": huge}),
                              ("/store/items/search", {"offset": huge}),
                              ("/store/namespaces", {"max_depth": huge}),
                              ("/store/namespaces", {"offset": huge})]:
            r = http.post(path, json=payload)
            assert r.status_code == 422 and next(iter(payload)) in r.text, (path, r.text)
        r = http.post("/runs", json={"assistant_id": "chain", "webhook": "not a url"})
        assert r.status_code == 422 and "webhook" in r.text


UNKNOWN = str(uuid.uuid4())
# (method, path, body); {thread} and {run} are the known ones, UNKNOWN exists nowhere.
UNKNOWN_IDS = [
    ("GET", f"/threads/{UNKNOWN}", None),
    ("PATCH", f"/threads/{UNKNOWN}", {"metadata": {"a": 1}}),
    ("DELETE", f"/threads/{UNKNOWN}", None),
    ("POST", f"/threads/{UNKNOWN}/copy", None),
    ("GET", f"/threads/{UNKNOWN}/state", None),
    ("POST", f"/threads/{UNKNOWN}/state", {"values": {"n": 1}}),
    ("GET", f"/threads/{UNKNOWN}/history", None),
    ("POST", f"/threads/{UNKNOWN}/history", {}),
    ("GET", f"/threads/{UNKNOWN}/runs", None),
    ("POST", f"/threads/{UNKNOWN}/runs", {"assistant_id": "chain"}),
    ("POST", f"/threads/{UNKNOWN}/runs/wait", {"assistant_id": "chain", "input": {"n": 0}}),
    ("POST", f"/threads/{UNKNOWN}/runs/stream", {"assistant_id": "chain", "input": {"n": 0}}),
    ("POST", f"/threads/{UNKNOWN}/runs/crons", {"assistant_id": "chain", "schedule": "0 0 1 1 *"}),
    ("GET", "{thread}/state/" + UNKNOWN, None),
    ("GET", "{thread}/runs/" + UNKNOWN, None),
    ("DELETE", "{thread}/runs/" + UNKNOWN, None),
    ("GET", "{thread}/runs/" + UNKNOWN + "/join", None),
    ("GET", "{thread}/runs/" + UNKNOWN + "/stream", None),
    ("POST", "{thread}/runs/" + UNKNOWN + "/cancel", None),
    ("GET", f"/threads/{UNKNOWN}/runs/{{run}}", None),  # a run, asked under another thread
    ("POST", "{thread}/runs", {"assistant_id": UNKNOWN}),
    ("POST", "/runs", {"assistant_id": UNKNOWN}),
    ("POST", "/runs/wait", {"assistant_id": UNKNOWN}),
    ("POST", "/runs/stream", {"assistant_id": UNKNOWN}),
    ("POST", "/runs/batch", [{"assistant_id": "chain"}, {"assistant_id": UNKNOWN}]),
    ("POST", "/runs/crons", {"assistant_id": UNKNOWN, "schedule": "0 0 1 1 *"}),
    ("GET", f"/assistants/{UNKNOWN}", None),
    ("PATCH", f"/assistants/{UNKNOWN}", {"name": "x"}),
    ("DELETE", f"/assistants/{UNKNOWN}", None),
    ("GET", f"/assistants/{UNKNOWN}/graph", None),
    ("GET", f"/assistants/{UNKNOWN}/schemas", None),
    ("POST", f"/assistants/{UNKNOWN}/versions", {}),
    ("POST", f"/assistants/{UNKNOWN}/latest", {"version": 1}),
    ("POST", "/assistants/chain/latest", {"version": 99}),
    ("POST", "/assistants", {"graph_id": "no-such-graph"}),
    ("PATCH", "/assistants/chain", {"graph_id": "no-such-graph"}),
    ("POST", "/threads", {"graph_id": "no-such-graph"}),
    ("PATCH", f"/runs/crons/{UNKNOWN}", {"enabled": False}),
    ("DELETE", f"/runs/crons/{UNKNOWN}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), UNKNOWN_IDS,
                         ids=[f"{m} {p}" for m, p, _ in UNKNOWN_IDS])
def test_unknown_id_is_404(http: httpx.Client, known: dict[str, str], method: str, path: str,
                           body: Any) -> None:
    path = (path.replace("{thread}", f"/threads/{known['thread_id']}")
            .replace("{run}", known["run_id"]))
    with _writes_nothing(http, known):
        r = _send(http, method, path, body)
    assert r.status_code == 404, r.text
    assert "not found" in r.text or "not served" in r.text or "no version" in r.text, r.text


def test_refused_run_leaves_the_thread_as_it_was(http: httpx.Client) -> None:
    """A run refused as the thread is busy (multitask_strategy=reject) changes nothing,
    not even which graph the thread's state is read with."""
    thread_id = http.post("/threads", json={}).json()["thread_id"]
    busy = http.post(f"/threads/{thread_id}/runs",
                     json={"assistant_id": "slow", "input": {"n": 0, "delay": 0.5}}).json()
    before = http.get(f"/threads/{thread_id}").json()["metadata"]
    r = http.post(f"/threads/{thread_id}/runs", json={
        "assistant_id": "chain", "input": {"n": 0}, "multitask_strategy": "reject"})
    assert r.status_code == 409, r.text
    assert http.get(f"/threads/{thread_id}").json()["metadata"] == before == {
        "graph_id": "slow", "assistant_id": busy["assistant_id"]}
    assert [run["run_id"] for run in http.get(f"/threads/{thread_id}/runs").json()] == [
        busy["run_id"]]
    assert http.get(f"/threads/{thread_id}/runs/{busy['run_id']}/join").json()["n"] == 3


def test_any_text_is_an_id(http: httpx.Client) -> None:
    """Ids are any text; the Location headers that hold them are percent-encoded Latin-1."""
    thread_id = "thread-ü-✓-𝄞"
    r = http.post(f"/threads/{quote(thread_id)}/runs/wait", json={
        "assistant_id": "chain", "input": {"n": 0}, "if_not_exists": "create"})
    assert r.status_code == 200 and r.json() == {"n": 10}, r.text
    run_id = http.get(f"/threads/{quote(thread_id)}/runs").json()[0]["run_id"]
    assert r.headers["location"] == f"/threads/{quote(thread_id, safe='')}/runs/{run_id}/join"
    assert http.get(r.headers["location"]).json() == {"n": 10}
    assert http.get(r.headers["content-location"]).json()["thread_id"] == thread_id


def test_body_over_the_limit_is_413(http: httpx.Client, known: dict[str, str]) -> None:
    big = {"metadata": {"pad": "x" * BODY_LIMIT}}

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"metadata": {"pad": "'
        for _ in range(BODY_LIMIT // 512 + 1):
            yield b"x" * 512
        yield b'"}}'

    with _writes_nothing(http, known):
        for method, path in [("POST", "/threads"), ("POST", "/assistants"),
                             ("POST", f"/threads/{known['thread_id']}/runs")]:
            r = http.request(method, path, json=big)
            assert r.status_code == 413 and "TREADLE_MAX_BODY_BYTES" in r.text, r.text
        r = http.post("/threads", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413, r.text
    small = {"metadata": {"pad": "x" * (BODY_LIMIT - 100)}}
    assert http.post("/threads", json=small).status_code == 200
