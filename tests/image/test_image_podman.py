"""The image, tested for real: deploy/Dockerfile built with podman on a local Debian base, the
manifests of ``treadle deploy k8s`` played as pods against this machine's PostgreSQL, a run
through the official SDK, and a worker container killed (SIGKILL) or stopped (SIGTERM) in the
middle of a run: the run completes on another worker, with every step committed once; last,
the API container stopped (SIGTERM) drains: /readyz 503 while it still serves, then exit 0.
Every exec command of the manifests (probes, postStart/preStop hooks) exits 0 in the image.

Marker ``image``; ``.ci/run`` runs it where podman is installed (it is skipped elsewhere; it
needs root for podman and debootstrap). tests/image/podman_cluster.py holds the recipe.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from langgraph_sdk import get_sync_client
from podman_cluster import PROBES, Cluster, Podman, alive, start
from psycopg import sql

# The module fixture builds the image (a few minutes cold, none when the build context is
# unchanged) and plays the pods.
pytestmark = [pytest.mark.image, pytest.mark.postgres, pytest.mark.timeout(1800)]

PODMAN = shutil.which("podman")
if PODMAN is None:
    pytest.skip("the image tests need podman (apt-get install podman runc debootstrap)",
                allow_module_level=True)

NODES = ["one", "two", "three", "four", "five", "six"]


@pytest.fixture(scope="module")
def database(pg_server_url: str) -> Iterator[str]:
    name = f"treadle_image_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        # The databases of earlier runs killed before their teardown.
        for (old,) in admin.execute("SELECT datname FROM pg_database "
                                    "WHERE datname LIKE 'treadle\\_image\\_%'").fetchall():
            pid = old.split("_")[2]
            if pid.isdigit() and not alive(int(pid)):
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                              .format(sql.Identifier(old)))
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
    # SIGTERM (a CI job cancelled) as Ctrl-C: pytest then still tears the pods down.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        workdir = tmp_path_factory.mktemp("podman")
        podman = Podman(PODMAN, workdir)
        podman.remove_leftovers()
        podman.ensure_base_image()
        image = podman.image()
        url = database.replace("localhost", "127.0.0.1")
        yield from start(podman, image, workdir, url, workers=3,
                         extra_env={"IMAGE_E2E_DB": url})
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


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


def _check_committed_once(cluster: Cluster, thread_id: str, run_id: str) -> list[tuple[str, str]]:
    """The run succeeded and each step is committed once (the API's state and checkpoint
    history); returns the nodes' starts as (node, pod), in order."""
    client = get_sync_client(url=cluster.api_url)
    client.runs.join(thread_id, run_id)
    run = client.runs.get(thread_id, run_id)
    assert run["status"] == "success", run
    values = client.threads.get_state(thread_id)["values"]
    assert isinstance(values, dict) and values["steps"] == NODES  # each node's write once
    history = client.threads.get_history(thread_id, limit=100)
    steps = [(c["metadata"] or {})["step"] for c in history]
    assert sorted(steps) == list(range(-1, len(NODES) + 1)), steps  # no step twice, none lost
    return _starts(cluster.database_url, thread_id)


def test_a_run_through_the_sdk_completes_on_the_pods(cluster: Cluster) -> None:
    client = get_sync_client(url=cluster.api_url)
    thread = client.threads.create()
    result = client.runs.wait(thread["thread_id"], "steps", input={"sleep": 0.0})
    assert isinstance(result, dict) and result["steps"] == NODES
    runs = client.runs.list(thread["thread_id"])
    starts = _check_committed_once(cluster, thread["thread_id"], runs[0]["run_id"])
    assert [node for node, _pod in starts] == NODES, starts  # each node ran once
    assert {pod for _node, pod in starts} <= set(cluster.workers), starts


def test_the_manifests_commands_run_in_the_image(cluster: Cluster) -> None:
    """Every exec probe and postStart/preStop exec hook of the rendered workloads exits 0 in
    the image: the commands need no tool the image lacks (the HTTP probes are asked from the
    host). Run in a played pod's container where one runs (its user, env, mounts and
    read-only root), else in a new container of the image. Second: every pod still runs."""
    commands = _exec_commands(cluster.rendered)
    assert commands, "the rendered manifests have no exec probe or hook: nothing is checked"
    for workload, container, what, command in commands:
        done = _run_in_image(cluster, workload, container, command)
        assert done.returncode == 0, (f"{workload} {container} {what} {command} exited "
                                      f"{done.returncode}:\n{done.stdout}\n{done.stderr}")


def _exec_commands(docs: list[dict[str, Any]]) -> list[tuple[str, str, str, list[str]]]:
    """(workload as Kind/name, container, probe or hook, command) of each exec command of the
    Deployments', StatefulSets', Jobs' and CronJobs' containers."""
    found = []
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        elif doc["kind"] not in ("Deployment", "StatefulSet", "Job"):
            continue
        pod_spec = spec["template"]["spec"]
        for container in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
            handlers = [(kind, container.get(kind) or {}) for kind in PROBES]
            handlers += list((container.get("lifecycle") or {}).items())
            found += [(f"{doc['kind']}/{doc['metadata']['name']}", container["name"], what,
                       [str(arg) for arg in handler["exec"]["command"]])
                      for what, handler in handlers if "exec" in handler]
    return found


def _run_in_image(cluster: Cluster, workload: str, container: str,
                  command: list[str]) -> subprocess.CompletedProcess[str]:
    """``podman exec`` in a running container of the workload's played pods, or (a Job's, or a
    workload not played) ``podman run`` of the image as the manifests run it."""
    done: subprocess.CompletedProcess[str]
    for pod in cluster.pods():
        name = f"{pod.name}-{container}"
        if pod.workload == workload and cluster.state(name)[0] == "running":
            done = cluster.podman("exec", name, *command, check=False, timeout=120)
            return done
    done = cluster.podman("run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
                          "--entrypoint", command[0], cluster.image, *command[1:],
                          check=False, timeout=120)
    return done


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_worker_container_lost_mid_run_the_run_completes_on_another(
        cluster: Cluster, how: str) -> None:
    client = get_sync_client(url=cluster.api_url)
    thread_id = client.threads.create()["thread_id"]
    run = client.runs.create(thread_id, "steps", input={"sleep": 1.5})
    lost = _running_pod(cluster.database_url, thread_id, "three")
    container = cluster.workers[lost].container
    if how == "kill":
        cluster.podman("kill", "--signal", "KILL", container)
    else:
        cluster.podman("stop", "--time", "30", container, timeout=60)
    starts = _check_committed_once(cluster, thread_id, run["run_id"])
    del cluster.workers[lost]
    where = dict(reversed(starts))  # node -> the pod that started it first
    nodes = [node for node, _pod in starts]
    if how == "kill":
        # The node in flight died with the container: it alone runs again, on another worker.
        assert nodes == [*NODES[:3], "three", *NODES[3:]], starts
        assert starts[2] == ("three", lost) and starts[3][1] != lost, starts
        assert cluster.state(container) == ("exited", 137)
    else:
        # SIGTERM drains: the node in flight finishes and commits on the stopping worker,
        # which hands the run back; every node ran once.
        assert nodes == NODES and where["three"] == lost, starts
        assert cluster.state(container) == ("exited", 0), cluster.logs(container)
    assert all(pod != lost for _node, pod in starts[nodes.index("four"):]), starts
    assert {pod for _node, pod in starts} <= {lost, *cluster.workers}, starts


def test_the_api_container_drains_on_sigterm(cluster: Cluster) -> None:
    """Last: the API stops. ``podman stop`` sends SIGTERM: /readyz turns 503 while the API
    still serves (TREADLE_SHUTDOWN_DELAY of the manifests' ConfigMap), then it exits 0."""
    assert cluster.api is not None
    container = cluster.api.container
    ready = f"{cluster.api_url}/readyz"
    assert httpx.get(ready, timeout=5).status_code == 200
    client = get_sync_client(url=cluster.api_url)
    thread_id = client.threads.create()["thread_id"]
    stop = cluster.podman.popen("stop", "--time", "30", container,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        codes = []
        while stop.poll() is None and 503 not in codes:
            try:
                codes.append(httpx.get(ready, timeout=2).status_code)
            except httpx.HTTPError:
                codes.append(0)
            time.sleep(0.05)
        assert 503 in codes, codes
        assert client.threads.get(thread_id)["thread_id"] == thread_id  # still serving
    finally:
        stop.wait(timeout=60)
    assert cluster.state(container) == ("exited", 0), cluster.logs(container)
