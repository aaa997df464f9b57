"""Bad input against a real `treadle dev`: generated requests and hand-written ones.

schemathesis reads the server's own OpenAPI document and sends every operation a bounded,
deterministic set of generated requests (valid and invalid); no response may be a 5xx.
Half of the generated ids are swapped for ids that exist (an assistant, threads with
finished and interrupted runs, a cron, a checkpoint) so requests reach past the 404.
The hand-written tests pin what bad input must get: 422 naming the field, 404 for an
unknown id, 413 over ``TREADLE_MAX_BODY_BYTES``, and no write on any rejection.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

pytestmark = pytest.mark.timeout(240)

# Generated examples per operation and phase: enough to find the 5xx of a careless handler,
# few enough that the whole module stays well under two minutes.
import os
MAX_EXAMPLES = int(os.environ.get("MAXEX", 20))
# Runs the fuzzer starts use these graphs (they end in milliseconds); never "slow".
FAST_ASSISTANTS = ("chain", "approval")


@dataclass
class Seeds:
    """Ids that exist on the server; ``victims`` are the ones DELETE may remove."""

    ids: dict[str, list[str]] = field(default_factory=dict)
    victims: dict[str, list[str]] = field(default_factory=dict)


def _seed(url: str) -> Seeds:
    with httpx.Client(base_url=url, timeout=30) as http:

        def post(path: str, body: Any) -> Any:
            r = http.post(path, json=body)
            assert r.status_code == 200, (path, r.status_code, r.text)
            return r.json()

        def finished_run(thread_id: str, assistant_id: str, run_input: Any) -> str:
            post(f"/threads/{thread_id}/runs/wait", {"assistant_id": assistant_id, "input": run_input})
            return str(http.get(f"/threads/{thread_id}/runs").json()[0]["run_id"])

        assistant = post("/assistants", {"graph_id": "chain", "name": "fuzzed"})["assistant_id"]
        victim_assistant = post("/assistants", {"graph_id": "chain"})["assistant_id"]
        done = post("/threads", {})["thread_id"]
        run = finished_run(done, "chain", {"n": 1})
        waiting = post("/threads", {})["thread_id"]
        finished_run(waiting, "approval", {"request": "x"})
        victim_thread = post("/threads", {})["thread_id"]
        victim_run = finished_run(victim_thread, "chain", {"n": 2})
        checkpoint = http.get(f"/threads/{done}/state").json()["checkpoint"]["checkpoint_id"]
        cron_body = {"assistant_id": "chain", "schedule": "0 0 1 1 *", "input": {"n": 0}}
        cron = post(f"/threads/{done}/runs/crons", cron_body)["cron_id"]
        victim_cron = post("/runs/crons", cron_body)["cron_id"]
    return Seeds(
        ids={"assistant_id": [assistant, *FAST_ASSISTANTS], "thread_id": [done, waiting],
             "run_id": [run], "cron_id": [cron], "checkpoint_id": [checkpoint]},
        victims={"assistant_id": [victim_assistant], "thread_id": [victim_thread],
                 "run_id": [victim_run], "cron_id": [victim_cron], "checkpoint_id": [checkpoint]},
    )


@pytest.fixture(scope="module")
def api(dev_server: Any) -> Iterator[Any]:
    seeds = _seed(dev_server.url)
    config = SchemathesisConfig.from_dict({
        "seed": int(os.environ.get("SEED", 20240611)),
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "request-timeout": 20,
    })
    schema = schemathesis.openapi.from_url(f"{dev_server.url}/openapi.json", config=config)

    @schema.hook
    def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
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
                               ("graph_id", FAST_ASSISTANTS), ("thread_id", seeds.ids["thread_id"])):
                if isinstance(body.get(name), str):
                    options += [{**body, name: value} for value in real]
        return st.sampled_from(options)

    import collections
    stats = collections.Counter()
    @schema.hook
    def after_call(context, case, response):
        stats[(case.operation.label, response.status_code)] += 1
        stats[(case.operation.label, "time")] += response.elapsed
    yield schema
    with open("/tmp/st/stats.txt", "w") as f:
        for k, v in sorted(stats.items(), key=str):
            print(k, v, file=f)


schema = schemathesis.pytest.from_fixture("api")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: Any) -> None:
    case.call_and_validate(checks=[not_a_server_error])
