"""Metrics and probes of real processes: `treadle serve` (the API) and `treadle worker --port`
on one PostgreSQL, driven through the real SDK, scraped over HTTP and parsed with
prometheus-client's own parser.

Every metric of docs/api.md#metrics is asserted with the value the workload implies: runs
counted by outcome, nodes timed (a node that fails once is retried once; a remote node is
timed on the worker that ran its task), the queue's depth while no worker runs, one
stream subscriber while one SDK stream is open, a lease loss after a SIGSTOP past the
lease. Then the probes: /readyz fails at SIGTERM while /healthz and the API still answer
during ``shutdown_delay``; a draining worker's /readyz fails until it exits.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client, get_sync_client
from prometheus_client.parser import text_string_to_metric_families

from processes import SERVER_GRAPHS, StartServer, StartWorker, free_port
from treadle.store import Store, open_store
from treadle.store.queue import RunRow

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(240)]

CONFIG = str(SERVER_GRAPHS / "langgraph.json")
FAST = ["--lease-ttl", "2", "--poll-interval", "0.05"]
# The node that fails once is retried at once (the default first backoff is 0.5 s).
WORKER_ENV = {"TREADLE_RETRY_INITIAL_INTERVAL": "0.05", "TREADLE_RETRY_JITTER": "false"}
CHAIN_NODES = [f"s{i}" for i in range(10)]


class Metrics:
    """One scrape: sample values by name and labels."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 when the series does not exist (yet)."""
        found = self.get(name, **labels)
        return 0.0 if found is None else found


def scrape(base: str) -> Metrics:
    response = httpx.get(f"{base}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Metrics(response.text)


def wait_metrics(base: str, ok: Callable[[Metrics], bool], timeout: float = 20) -> Metrics:
    """Scrape until ``ok`` holds (the queue gauges are cached for a second)."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(base)
        if ok(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never matched:\n{m.text}")
        time.sleep(0.1)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def run_row(store: Store, run_id: str) -> RunRow:
    row = store.get_run(run_id)
    assert row is not None, run_id
    return row


def status(base: str, path: str) -> int | None:
    try:
        return httpx.get(f"{base}{path}", timeout=5).status_code
    except httpx.HTTPError:
        return None


# --- a real workload, every metric -----------------------------------------------------------
async def test_every_metric_after_a_real_workload(pg_url: str, start_server: StartServer, start_worker: StartWorker) -> None:
    api = start_server("serve", store=pg_url, args=["--workers", "0"])
    client = get_client(url=api.url)

    # No worker yet: three runs wait in the queue.
    assert status(api.url, "/readyz") == 200 and status(api.url, "/healthz") == 200
    threads = [(await client.threads.create())["thread_id"] for _ in range(3)]
    runs = [await client.runs.create(t, "chain", input={"n": 0}) for t in threads]
    m = wait_metrics(api.url, lambda m: m.value("treadle_queue_depth") == 3)
    assert m.value("treadle_queue_runs", status="pending") == 3
    assert m.value("treadle_queue_runs", status="running") == 0
    assert m.value("treadle_queue_oldest_pending_age_seconds") > 0
    assert m.value("treadle_stream_subscribers") == 0
    assert m.get("process_cpu_seconds_total") is not None  # the process collectors too
    assert m.get("treadle_runs_total", graph="chain", status="success") is None  # no worker here

    port = free_port()
    worker = f"http://127.0.0.1:{port}"
    start_worker(pg_url, args=["--config", CONFIG, "--port", str(port), "--concurrency", "3",
                               "--task-slots", "2", *FAST], env=WORKER_ENV)
    assert status(worker, "/healthz") == 200 and status(worker, "/readyz") == 200
    for t, r in zip(threads, runs, strict=True):
        assert await client.runs.join(t, r["run_id"]) == {"n": 10}

    # A node that fails once (retried) and a node run as a remote task; then a run that fails.
    t = (await client.threads.create())["thread_id"]
    flaky = await client.runs.wait(t, "flaky", input={"done": []})
    assert isinstance(flaky, dict) and flaky["done"] == ["shaky", "far"]
    t = (await client.threads.create())["thread_id"]
    failing = await client.runs.create(t, "flaky", input={"fail": True})
    await client.runs.join(t, failing["run_id"])
    assert (await client.runs.get(t, failing["run_id"]))["status"] == "error"

    # One SDK stream open: one subscriber on the API, for as long as it is open.
    t = (await client.threads.create())["thread_id"]
    seen: list[float] = []
    async for part in client.runs.stream(t, "slow", input={"n": 0, "delay": 0.3},
                                         stream_mode="updates"):
        if not seen:
            seen.append(await asyncio.to_thread(
                lambda: scrape(api.url).value("treadle_stream_subscribers")))
        assert part.event != "error", part
    assert seen == [1]
    await asyncio.to_thread(wait_metrics, api.url,
                            lambda m: m.value("treadle_stream_subscribers") == 0)

    # The worker: what it ran.
    w = scrape(worker)
    assert w.value("treadle_runs_total", graph="chain", status="success") == 3
    assert w.value("treadle_runs_total", graph="flaky", status="success") == 1
    assert w.value("treadle_runs_total", graph="flaky", status="error") == 1
    assert w.value("treadle_runs_total", graph="slow", status="success") == 1
    assert w.value("treadle_run_duration_seconds_count", graph="chain", status="success") == 3
    assert w.value("treadle_run_duration_seconds_sum", graph="chain", status="success") > 0
    assert w.value("treadle_run_duration_seconds_count", graph="flaky", status="error") == 1
    for node in CHAIN_NODES:
        assert w.value("treadle_node_duration_seconds_count", graph="chain", node=node,
                       status="success") == 3, node
        assert w.get("treadle_node_duration_seconds_count", graph="chain", node=node,
                     status="error") is None
    # shaky: failed once then succeeded (one retry), and failed for good in the failing run.
    assert w.value("treadle_node_duration_seconds_count", graph="flaky", node="shaky",
                   status="success") == 1
    assert w.value("treadle_node_duration_seconds_count", graph="flaky", node="shaky",
                   status="error") == 2
    assert w.value("treadle_node_retries_total", graph="flaky", node="shaky") == 1
    assert w.get("treadle_node_retries_total", graph="chain", node="s0") is None
    # far ran as a remote task (claimed by this worker's task slots), labelled with its graph.
    assert w.value("treadle_node_duration_seconds_count", graph="flaky", node="far",
                   status="success") == 1
    assert w.value("treadle_node_duration_seconds_bucket", graph="flaky", node="far",
                   status="success", le="+Inf") == 1
    assert w.value("treadle_run_retries_total", graph="chain") == 0
    assert w.value("treadle_checkpoint_write_seconds_count") >= 3 * len(CHAIN_NODES)
    assert w.value("treadle_lease_losses_total", kind="run") == 0
    assert w.value("treadle_lease_losses_total", kind="task") == 0
    assert w.value("treadle_worker_slots", kind="run", state="busy") == 0
    assert w.value("treadle_worker_slots", kind="run", state="idle") == 3
    assert w.value("treadle_worker_slots", kind="task", state="busy") == 0
    assert w.value("treadle_worker_slots", kind="task", state="idle") == 2
    assert w.get("treadle_queue_depth") is None  # the API exports the queue, not workers
    assert w.get("process_cpu_seconds_total") is not None

    # The API: the queue is empty again.
    # (the gauges are read at most every max_age s: one read may predate the last run's end)
    m = wait_metrics(api.url, lambda m: m.value("treadle_queue_depth") == 0
                     and m.value("treadle_queue_runs", status="running") == 0)
    assert m.value("treadle_queue_oldest_pending_age_seconds") == 0

    # A slot is busy while a run is: slow sleeps 1 s per step.
    t = (await client.threads.create())["thread_id"]
    busy = await client.runs.create(t, "slow", input={"n": 0, "delay": 1.0})
    m = wait_metrics(worker, lambda m: m.value("treadle_worker_slots", kind="run",
                                               state="busy") == 1)
    assert m.value("treadle_worker_slots", kind="run", state="idle") == 2
    wait_metrics(api.url, lambda m: m.value("treadle_queue_runs", status="running") == 1)
    await client.runs.join(t, busy["run_id"])


async def test_a_sigstopped_worker_counts_its_lost_lease(pg_url: str, start_server: StartServer, start_worker: StartWorker) -> None:
    api = start_server("serve", store=pg_url, args=["--workers", "0"])
    client = get_client(url=api.url)
    port_a, port_b = free_port(), free_port()
    a = start_worker(pg_url, args=["--config", CONFIG, "--port", str(port_a), *FAST])
    t = (await client.threads.create())["thread_id"]
    run = await client.runs.create(t, "slow", input={"n": 0, "delay": 1.5})
    store = open_store(pg_url)
    try:
        wait_for(lambda: run_row(store, run["run_id"]).status == "running", "the run to start")
        time.sleep(0.3)  # inside its first step
        a.signal(signal.SIGSTOP)
        try:
            b = start_worker(pg_url, args=["--config", CONFIG, "--port", str(port_b), *FAST])
            # B's sweeper re-queues the run once A's lease expires; B claims it (attempt 2).
            wait_for(lambda: run_row(store, run["run_id"]).epoch >= 2, "B to take the run over")
        finally:
            a.signal(signal.SIGCONT)
        assert await client.runs.join(t, run["run_id"]) == {"n": 3, "delay": 1.5}
        assert run_row(store, run["run_id"]).attempt == 2
    finally:
        store.close()
    a_url, b_url = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    m = wait_metrics(a_url, lambda m: m.value("treadle_runs_total", graph="slow",
                                              status="lost") == 1)
    assert m.value("treadle_lease_losses_total", kind="run") == 1
    assert m.value("treadle_lease_losses_total", kind="task") == 0
    assert m.get("treadle_runs_total", graph="slow", status="success") is None
    assert m.value("treadle_run_retries_total", graph="slow") == 0
    m = scrape(b_url)
    assert m.value("treadle_run_retries_total", graph="slow") == 1
    assert m.value("treadle_runs_total", graph="slow", status="success") == 1
    assert m.value("treadle_lease_losses_total", kind="run") == 0
    assert "lease lost" in a.log() or "refused" in a.log(), a.log()
    assert b.proc.poll() is None


# --- probes ----------------------------------------------------------------------------------
def _free_port_pair() -> int:
    """A port P with P + 1 free too (treadle serve gives worker i port worker_port + i)."""
    for _ in range(50):
        p = free_port()
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p + 1))
        except OSError:
            continue
        return p
    raise AssertionError("no two consecutive free ports")


def test_api_drains_on_sigterm_and_serve_gives_each_worker_a_port(pg_url: str, start_server: StartServer) -> None:
    base = _free_port_pair()
    api = start_server("serve", store=pg_url, args=["--workers", "2"],
                       env={"TREADLE_SHUTDOWN_DELAY": "60", "TREADLE_WORKER_PORT": str(base)})
    workers = [f"http://127.0.0.1:{base + i}" for i in range(2)]
    for w in workers:
        def worker_ready(w: str = w) -> bool:
            return status(w, "/readyz") == 200

        wait_for(worker_ready, f"{w}/readyz")
        assert status(w, "/healthz") == 200
        assert "treadle_worker_slots" in httpx.get(f"{w}/metrics", timeout=5).text
    assert httpx.get(f"{api.url}/readyz", timeout=5).json() == {"ok": True}

    api.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: status(api.url, "/readyz") == 503, "/readyz to fail", timeout=10)
    ready = httpx.get(f"{api.url}/readyz", timeout=5)
    assert ready.json() == {"ok": False, "reason": "draining"}
    # Still serving: liveness and the API itself (the delay is a minute; nothing has stopped).
    assert status(api.url, "/healthz") == 200
    assert httpx.get(f"{api.url}/info", timeout=5).status_code == 200
    assert status(api.url, "/metrics") == 200
    assert api.proc.poll() is None
    # The worker processes are untouched until the API has stopped.
    assert all(status(w, "/readyz") == 200 for w in workers)

    api.proc.send_signal(signal.SIGTERM)  # a second signal: stop now
    assert api.proc.wait(timeout=60) == 0
    # ... and `treadle serve` stopped its workers before it exited.
    for w in workers:
        assert status(w, "/healthz") is None


def test_a_draining_worker_is_unready_until_it_exits(pg_url: str, start_server: StartServer, start_worker: StartWorker) -> None:
    api = start_server("serve", store=pg_url, args=["--workers", "0"])
    client = get_sync_client(url=api.url)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    w = start_worker(pg_url, args=["--config", CONFIG, "--port", str(port),
                                   "--drain-timeout", "30", *FAST])
    assert httpx.get(f"{url}/readyz", timeout=5).json() == {"ok": True}
    thread = client.threads.create()["thread_id"]
    # A node body of 3 s in flight when SIGTERM comes: the worker lets it finish (drain).
    run = client.runs.create(thread, "slow", input={"n": 0, "delay": 3.0})
    store = open_store(pg_url)
    try:
        wait_for(lambda: run_row(store, run["run_id"]).status == "running", "the run to start")
    finally:
        store.close()
    time.sleep(0.5)  # its first node body is under way
    w.signal(signal.SIGTERM)
    wait_for(lambda: status(url, "/readyz") == 503, "/readyz to fail", timeout=10)
    answers: list[tuple[int | None, Any]] = []
    while w.proc.poll() is None:  # until the process exits: unready, alive
        try:
            ready = httpx.get(f"{url}/readyz", timeout=5)
            health = httpx.get(f"{url}/healthz", timeout=5)
        except httpx.HTTPError:
            break  # the endpoint closed as the process exits
        answers.append((ready.status_code, ready.json()))
        assert health.status_code == 200, health.text
        time.sleep(0.1)
    assert answers and set(map(str, answers)) == {str((503, {"ok": False, "reason": "draining"}))}
    assert w.proc.wait(timeout=60) is not None
    assert "handed back" in w.log(), w.log()
