"""The image, tested for real: deploy/Dockerfile built with podman on a local Debian base, the
manifests of ``treadle deploy k8s`` played as pods against this machine's PostgreSQL, a run
through the official SDK, and a worker container killed (SIGKILL) or stopped (SIGTERM) in the
middle of a run: the run completes on another worker, with every step committed once.

Marker ``image``; ``.ci/run`` runs it where podman is installed (it is skipped elsewhere; it
needs root for podman and debootstrap). tests/image/podman_cluster.py holds the recipe.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from langgraph_sdk import get_sync_client
from podman_cluster import Cluster, Podman, start
from psycopg import sql

# The module fixture builds the image (about a minute, cold) and plays the pods.
pytestmark = [pytest.mark.image, pytest.mark.postgres, pytest.mark.timeout(1800)]

PODMAN = shutil.which("podman")
if PODMAN is None:
    pytest.skip("the image tests need podman (apt-get install podman runc debootstrap)",
                allow_module_level=True)

NODES = ["one", "two", "three", "four", "five", "six"]


@pytest.fixture(scope="module")
def database(pg_server_url: str) -> Iterator[str]:
    name = f"treadle_image_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base, _, _ = pg_server_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                          .format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Cluster]:
    assert PODMAN is not None
    workdir = tmp_path_factory.mktemp("podman")
    podman = Podman(PODMAN, workdir)
    podman.ensure_base_image()
    podman.build()
    url = database.replace("localhost", "127.0.0.1")
    yield from start(podman, workdir, url, workers=3, extra_env={"IMAGE_E2E_DB": url})


def _starts(database: str, thread_id: str) -> list[tuple[str, str]]:
    with psycopg.connect(database) as conn:
        try:
            rows = conn.execute("SELECT node, pod FROM image_e2e_starts WHERE thread_id = %s "
                                "ORDER BY at", (thread_id,)).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
    return [(r[0], r[1]) for r in rows]


def _running_pod(database: str, thread_id: str, at_node: str, timeout: float = 120) -> str:
    """The worker pod that started ``at_node`` of the thread's run (waits for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for node, pod in _starts(database, thread_id):
            if node == at_node:
                return pod
        time.sleep(0.1)
    raise AssertionError(f"no worker started {at_node} of {thread_id} in {timeout:.0f}s")


def _check_committed_once(cluster: Cluster, thread_id: str, run_id: str,
                          lost_pod: str | None) -> None:
    client = get_sync_client(url=cluster.api_url)
    client.runs.join(thread_id, run_id)
    run = client.runs.get(thread_id, run_id)
    assert run["status"] == "success", run
    values = client.threads.get_state(thread_id)["values"]
    assert isinstance(values, dict) and values["steps"] == NODES  # each node's write committed exactly once
    history = client.threads.get_history(thread_id, limit=100)
    steps = [(c["metadata"] or {})["step"] for c in history]
    assert len(steps) == len(set(steps)), steps  # no step committed twice
    assert sorted(steps) == list(range(-1, len(NODES) + 1)), steps
    starts = _starts(cluster.database_url, thread_id)
    counts = Counter(node for node, _pod in starts)
    assert set(counts) == set(NODES), starts
    again = [node for node, n in counts.items() if n > 1]
    assert len(again) <= 1 and all(counts[n] == 2 for n in again), starts
    if lost_pod is not None:
        # Only the node in flight on the lost worker may run again, on another worker.
        for node in again:
            first, second = [pod for n, pod in starts if n == node]
            assert first == lost_pod and second != lost_pod, starts
        last = max(i for i, (_n, pod) in enumerate(starts) if pod == lost_pod)
        assert all(pod != lost_pod for _n, pod in starts[last + 1:]), starts


def test_a_run_through_the_sdk_completes_on_the_pods(cluster: Cluster) -> None:
    client = get_sync_client(url=cluster.api_url)
    thread = client.threads.create()
    result = client.runs.wait(thread["thread_id"], "steps", input={"sleep": 0.0})
    assert isinstance(result, dict) and result["steps"] == NODES
    runs = client.runs.list(thread["thread_id"])
    _check_committed_once(cluster, thread["thread_id"], runs[0]["run_id"], None)


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_worker_container_lost_mid_run_the_run_completes_on_another(
        cluster: Cluster, how: str) -> None:
    client = get_sync_client(url=cluster.api_url)
    thread = client.threads.create()
    thread_id = thread["thread_id"]
    run = client.runs.create(thread_id, "steps", input={"sleep": 1.5})
    pod = _running_pod(cluster.database_url, thread_id, "three")
    assert pod in cluster.workers
    container = cluster.container(pod)
    if how == "kill":
        cluster.podman("kill", "--signal", "KILL", container)
    else:
        cluster.podman("stop", "--time", "10", container, timeout=60)
    _check_committed_once(cluster, thread_id, run["run_id"], pod)
    state = cluster.podman("inspect", "--format", "{{.State.Status}}", container).stdout
    assert state.strip() == "exited"
    del cluster.workers[pod]
