"""`treadle deploy k8s` end to end: kubectl renders the same manifests, KEDA's queries count
the right runs on a real PostgreSQL, and every container starts as its manifest states it
(command, args, env, mounted langgraph.json, probes), drains on SIGTERM and hands its run over.

Without a cluster, a pod is a local process (tests/manifest_pods.py). Under CI=true the tests
needing kubectl or PostgreSQL fail instead of skipping when those are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from manifest_pods import REPO, LocalPod, find, pod_spec
from processes import SRC, subprocess_env
from treadle.deploy.manifests import K8S, K8sOptions, render
from treadle.store.cipher import generate_key


def _options(**given: Any) -> K8sOptions:
    """Options as the shipped overlays render them: the prod overlay's refusal of a public
    API without auth is tested on its own (test_deploy.py)."""
    return K8sOptions(**{"allow_unauthenticated": True, **given})

EXAMPLES = REPO / "examples"
CLUSTER_GRAPHS = Path(__file__).resolve().parents[1] / "cluster_graphs"
CI = os.environ.get("CI", "").lower() == "true"


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        message = f"needs {tool} on PATH"
        if CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def _docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _treadle(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treadle", *args], env=subprocess_env(),
                          capture_output=True, text=True, timeout=120, **kw)


# --- kubectl agrees -------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_render_equals_kubectl_kustomize(overlay: str) -> None:
    kubectl = _need("kubectl")
    theirs = subprocess.run([kubectl, "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
                            capture_output=True, text=True, check=True, timeout=60).stdout
    mine = _treadle("deploy", "k8s", "--overlay", overlay, "--allow-unauthenticated")
    assert mine.returncode == 0, mine.stderr
    assert _docs(mine.stdout) == _docs(theirs)  # same documents, same order


def test_post_migrate_render_equals_kubectl_kustomize(tmp_path: Path) -> None:
    kubectl = _need("kubectl")
    prod = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(K8S / "post-migrate", tmp_path)],
        **{k: prod[k] for k in ("namespace", "labels", "images")},
    }))
    theirs = subprocess.run([kubectl, "kustomize", str(tmp_path)], capture_output=True,
                            text=True, check=True, timeout=60).stdout
    mine = _treadle("deploy", "k8s", "--overlay", "prod", "--post-migrate")
    assert mine.returncode == 0, mine.stderr
    assert _docs(mine.stdout) == _docs(theirs)


def test_deploy_works_from_the_built_wheel(tmp_path: Path) -> None:
    """The manifests (and the console's files) ship in the wheel: render from an unpacked
    wheel, not this checkout."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path / "dist"), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("treadle-*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-m", "treadle", "deploy", "k8s", "--overlay", "prod",
                           "--allow-unauthenticated"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    from_checkout = _treadle("deploy", "k8s", "--overlay", "prod",
                             "--allow-unauthenticated").stdout
    assert _docs(done.stdout) == _docs(from_checkout)
    probe = subprocess.run([sys.executable, "-c", "import treadle; print(treadle.__file__)"],
                           env=env, cwd=tmp_path, capture_output=True, text=True)
    assert probe.stdout.startswith(str(site))
    # the web console ships whole: every file of its assets is in the wheel, as is
    console = REPO / "src" / "treadle" / "console" / "assets"
    for path in console.rglob("*"):
        if path.is_file():
            packed = site / "treadle" / "console" / "assets" / path.relative_to(console)
            assert packed.read_bytes() == path.read_bytes(), packed


def test_the_install_step_installs_local_packages(tmp_path: Path) -> None:
    """What the Dockerfile runs, run here: a packaged dependency gets built and installed
    (pip fetches its build backend, as in the image build)."""
    graphs = tmp_path / "graphs"
    pkg = graphs / "helpers"
    (pkg / "helpers_pkg").mkdir(parents=True)
    (pkg / "helpers_pkg" / "__init__.py").write_text("VALUE = 42\n")
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "helpers-pkg"\nversion = "1.0"\n'
        '[tool.setuptools]\npackages = ["helpers_pkg"]\n')
    (graphs / "langgraph.json").write_text(json.dumps(
        {"dependencies": [".", "./helpers"], "graphs": {"pipeline": "./pipeline.py:builder"}}))
    target = tmp_path / "target"
    done = _treadle_module("treadle.deploy.dependencies", str(graphs / "langgraph.json"), "--",
                           "--no-deps", "-q", "--target", str(target))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "helpers_pkg" / "__init__.py").is_file()
    dry = _treadle_module("treadle.deploy.dependencies", str(EXAMPLES / "langgraph.json"),
                          "--dry-run")
    assert dry.returncode == 0 and dry.stdout == "nothing to install\n"


def _cleanup_step() -> str:
    """The builder's RUN that strips the virtualenv of its installers."""
    from dockerfile_parse import DockerfileParser

    runs = [i["value"] for i in DockerfileParser(str(REPO / "deploy" / "Dockerfile")).structure
            if i["instruction"] == "RUN" and "pip uninstall" in i["value"]]
    assert len(runs) == 1
    return str(runs[0])


@pytest.mark.parametrize("required", [False, True])
def test_the_cleanup_step_strips_the_installers(tmp_path: Path, required: bool) -> None:
    """The Dockerfile's step, run on a fresh virtualenv as the builder's /opt/venv: pip goes,
    and setuptools too, unless an installed distribution requires it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"

    def installed() -> set[str]:
        listed = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; "
             "print(' '.join(d.metadata['Name'].lower() for d in m.distributions()))"],
            capture_output=True, text=True, check=True)
        return set(listed.stdout.split())

    assert {"pip", "setuptools"} <= installed()  # what `python -m venv` gives on 3.11
    if required:  # a graph's dependency that needs setuptools at run time
        site = next((venv / "lib").glob("python*/site-packages"))
        info = site / "needs_setuptools-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: needs-setuptools\n"
                                       "Version: 1.0\nRequires-Dist: setuptools\n")
        (info / "RECORD").write_text("")
        (info / "INSTALLER").write_text("pip\n")
    env = {**os.environ, "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", _cleanup_step()], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    left = installed()
    assert "pip" not in left and "wheel" not in left
    assert ("setuptools" in left) == required
    assert not (venv / "bin" / "pip").exists()


def _treadle_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)


# --- KEDA's queries on PostgreSQL -----------------------------------------------------------


def _trigger_queries() -> dict[str, str]:
    docs, _ = render(_options(overlay="prod"))
    scaled = find(docs, "ScaledObject", "treadle-worker")
    return {t["name"]: t["metadata"]["query"] for t in scaled["spec"]["triggers"]
            if t["type"] == "postgresql"}


@pytest.mark.postgres
def test_keda_queries_count_the_work_waiting_for_workers(pg_url: str) -> None:
    from treadle.store import open_store
    from treadle.store.queue import NewRun, NewTask

    def run(run_id: str, thread: str, graph: str = "ref:g") -> NewRun:
        return NewRun(run_id=run_id, thread_id=thread, graph_id=graph, payload=b"x")

    queries = _trigger_queries()

    def count(name: str) -> int:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute(queries[name]).fetchone()
            assert row is not None
            return int(row[0])

    with open_store(pg_url, auto_migrate=True) as store:
        assert count("runs") == 0
        for i in range(4):  # the plain case: N = 4 pending runs, nothing else
            store.enqueue_run(run(f"n{i}", f"thread-n{i}"))
        assert count("runs") == 4
        for _ in range(4):  # out of the way of what follows
            claimed = store.claim_run("w0", ["ref:g"], False, 60)
            assert claimed is not None
            assert store.finish_run(claimed.run_id, claimed.epoch, "success")
        assert count("runs") == 0
        running = []
        for i in range(3):  # R = 3 running
            store.enqueue_run(run(f"r{i}", f"thread-r{i}"))
            claimed = store.claim_run("w1", ["ref:g"], False, 60)
            assert claimed is not None
            running.append(claimed)
        for i, status in enumerate(("success", "error")):  # finished: not counted
            store.enqueue_run(run(f"f{i}", f"thread-f{i}"))
            claimed = store.claim_run("w1", ["ref:g"], False, 60)
            assert claimed is not None
            assert store.finish_run(claimed.run_id, claimed.epoch, status)
        store.enqueue_run(run("c0", "thread-c0"))
        store.cancel_run("c0")  # cancelled while pending: not counted
        for i in range(5):  # N = 5 pending that a worker could claim now
            store.enqueue_run(run(f"p{i}", f"thread-p{i}"))
        store.enqueue_run(run("blocked-by-running", "thread-r0"))
        store.enqueue_run(run("blocked-by-older", "thread-p0"))
        store.enqueue_run(run("pickled", "thread-k", graph="pickle:abc"))
        assert count("runs") == 3 + 5

        # The query's "claimable" is the claim's: a worker gets exactly those five.
        claimed_now = []
        while (row := store.claim_run("w2", ["ref:g"], False, 60)) is not None:
            claimed_now.append(row.run_id)
        assert sorted(claimed_now) == [f"p{i}" for i in range(5)]
        assert count("runs") == 3 + 5  # the same work, now all running

        for i in range(3):
            store.submit_task(NewTask(task_key=f"t{i}", run_id="r0", thread_id="thread-r0",
                                      graph_id="ref:g", node="n", payload=b"x"))
        store.submit_task(NewTask(task_key="orphan", run_id="f0", thread_id="thread-f0",
                                  graph_id="ref:g", node="n", payload=b"x"))  # run is over
        assert len(store.claim_tasks("w1", ["ref:g"], False, 60, 1)) == 1
        assert count("tasks") == 3
        assert store.finish_run(running[0].run_id, running[0].epoch, "success")
        # r0 is done; the run queued behind it on its thread is claimable now.
        assert count("runs") == 3 + 5 - 1 + 1
        assert count("tasks") == 1  # the running task still holds a slot; its run is over


# --- every container as its manifest states it ----------------------------------------------


def _app_dir(tmp_path: Path, *files: Path) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    for file in files:
        shutil.copy(file, app / file.name)
    return app


@pytest.mark.postgres
@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_every_container_runs_as_its_manifest_states(overlay: str, pg_url: str,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    docs, _ = render(_options(overlay=overlay))
    post_docs, _ = render(_options(overlay=overlay, post_migrate=True))
    app = _app_dir(tmp_path, EXAMPLES / "pipeline.py")
    keys = f"k1:{generate_key()}"  # treadle-security: the API, worker and batch share them
    secrets = {("treadle-database", "url"): pg_url, ("treadle-security", "encryption-keys"): keys}

    def pod(kind: str, name: str, source: list[dict[str, Any]] = docs, **kw: Any) -> LocalPod:
        return LocalPod(docs=source, doc=find(source, kind, name), app_dir=app, secrets=secrets,
                        log_path=tmp_path / f"{name}-{time.monotonic_ns()}.log", **kw)

    # Before the migrate Job, the API and the workers refuse to start, in one line.
    for kind, name in (("Deployment", "treadle-api"), ("Deployment", "treadle-worker")):
        early = pod(kind, name).run(timeout=60)
        assert early.returncode == 1, early.stdout + early.stderr
        errors = [line for line in early.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "run `treadle migrate --phase pre` first" in errors[0]
        assert "Traceback" not in early.stderr

    # Their init containers, started meanwhile (as `kubectl apply` of everything at once
    # does), wait for the schema and let the pods start once the Job has run.
    waiting = [pod(kind, name, init="wait-for-schema").start() for kind, name in (
        ("Deployment", "treadle-api"), ("Deployment", "treadle-worker"),
        ("CronJob", "treadle-batch"))]
    try:
        for init in waiting:
            deadline = time.monotonic() + 60  # a guard against hanging, not a speed claim
            while "waiting (up to 900s)" not in init.log() and time.monotonic() < deadline:
                assert init.proc is not None and init.proc.poll() is None, init.log()
                time.sleep(0.1)
            assert "run `treadle migrate --phase pre` first" in init.log()
        migrate = pod("Job", "treadle-migrate-pre").run()
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        assert "applied" in migrate.stdout
        for init in waiting:
            assert init.proc is not None and init.proc.wait(60) == 0, init.log()
            assert "is ready for this treadle" in init.log()
            assert "Traceback" not in init.log()
    finally:
        for init in waiting:
            init.stop()

    api = pod("Deployment", "treadle-api").start()
    worker = pod("Deployment", "treadle-worker").start()
    try:
        for p in (api, worker):
            p.wait_probe("startupProbe", timeout=60)
            p.wait_probe("livenessProbe", timeout=10)
            p.wait_probe("readinessProbe", timeout=10)
        metrics = httpx.get(api.probe_url("livenessProbe").replace("/healthz", "/metrics"))
        assert metrics.status_code == 200
        # The API on its Service port serves the ConfigMap's graph, run by the worker.
        base = api.probe_url("livenessProbe").removesuffix("/healthz")
        assert httpx.get(f"{base}/info").json()["graphs"] == ["pipeline"]
        out = httpx.post(f"{base}/runs/wait", json={
            "assistant_id": "pipeline", "input": {"text": "One. Two words. Three more words."}},
            timeout=60)
        assert out.status_code == 200, out.text
        assert out.json()["report"].count("words") == 3

        batch = pod("CronJob", "treadle-batch", field_refs={
            "metadata.labels['batch.kubernetes.io/job-name']": "treadle-batch-29300000"}).run()
        assert batch.returncode == 0, batch.stdout + batch.stderr
        assert "report" in json.loads(batch.stdout.strip().splitlines()[-1])
        from treadle.store import open_store

        # What the pods wrote is encrypted with treadle-security's keys (the batch pod's
        # checkpoints; the API and worker shared the keys, or the run above had failed).
        monkeypatch.setenv("TREADLE_ENCRYPTION_KEYS", keys)
        with open_store(pg_url, auto_migrate=False) as store:  # the Job's name is the thread
            [*records] = store.list_checkpoints("treadle-batch-29300000", "")
            assert records and all(r.row.checkpoint.startswith(b"tdl\x01") for r in records)
    finally:
        api.stop()
        worker.stop()
    assert api.proc is not None and api.proc.returncode == 0, api.log()
    assert worker.proc is not None and worker.proc.returncode == 0, worker.log()

    # After the rollout: the post-migration Job (its ConfigMap is the overlay's).
    post = pod("Job", "treadle-migrate-post", source=docs + post_docs).run()
    assert post.returncode == 0, post.stdout + post.stderr


@pytest.mark.postgres
def test_sigterm_drains_a_worker_and_hands_its_run_over(pg_url: str, tmp_path: Path) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({
        "dependencies": ["."], "graphs": {"chain": "./chain.py:builder"},
        "env": {"STEP_SLEEP": "1.0"},
    }))
    docs, _ = render(_options(overlay="prod", config=config))
    app = _app_dir(tmp_path, CLUSTER_GRAPHS / "chain.py")
    secrets = {("treadle-database", "url"): pg_url}
    settings = find(docs, "ConfigMap", "treadle-env")["data"]
    worker_doc = find(docs, "Deployment", "treadle-worker")
    grace = pod_spec(worker_doc)["terminationGracePeriodSeconds"]
    assert grace >= float(settings["TREADLE_DRAIN_TIMEOUT"])

    def pod(kind: str, name: str) -> LocalPod:
        return LocalPod(docs=docs, doc=find(docs, kind, name), app_dir=app, secrets=secrets,
                        log_path=tmp_path / f"{name}-{time.monotonic_ns()}.log")

    assert pod("Job", "treadle-migrate-pre").run().returncode == 0
    a = pod("Deployment", "treadle-worker").start()
    b: LocalPod | None = None
    try:
        a.wait_probe("readinessProbe", timeout=60)
        import treadle
        from treadle.cluster import client
        from treadle.graphs.refs import load_graph

        with treadle.compile(load_graph(f"{app / 'chain.py'}:builder"), store=pg_url,
                             graph_id="chain") as graph:
            row = client.submit(graph, {"n": 0, "done": []},
                                {"runtime": "distributed", "configurable": {"thread_id": "handoff"}},
                                {})
            deadline = time.monotonic() + 60
            while len(_steps(graph, "handoff")) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(_steps(graph, "handoff")) >= 3, a.log()
            b = pod("Deployment", "treadle-worker").start()
            b.wait_probe("readinessProbe", timeout=60)
            assert a.proc is not None
            # Right after a step commits, the next node (1 s) is in flight: drain waits for it.
            committed = len(_steps(graph, "handoff"))
            while len(_steps(graph, "handoff")) == committed and time.monotonic() < deadline:
                time.sleep(0.01)
            sent = time.monotonic()
            a.proc.send_signal(signal.SIGTERM)
            seen: list[int] = []
            while a.proc.poll() is None and time.monotonic() - sent < grace:
                try:
                    seen.append(httpx.get(a.probe_url("readinessProbe"), timeout=1).status_code)
                except httpx.HTTPError:
                    pass
                time.sleep(0.02)
            a.proc.wait(max(1.0, grace - (time.monotonic() - sent)))  # within the grace period
            assert a.proc.returncode == 0, a.log()
            assert 503 in seen, seen  # draining: out of rotation
            assert 200 not in seen[seen.index(503):], seen  # and it stays out
            done = client.wait(graph.backend, row.run_id, timeout=60)
            assert done.status == "success" and done.attempt == 1, done  # handed over, not failed
            assert _steps(graph, "handoff") == list(range(-1, 11))  # every step committed once
            assert "handed back" in a.log()
    finally:
        a.stop()
        if b is not None:
            b.stop()


def _steps(graph: Any, thread_id: str) -> list[int]:
    return sorted(json.loads(r.row.metadata).get("step")
                  for r in graph.backend.list_checkpoints(thread_id, ""))


def test_src_is_what_the_pods_import() -> None:
    # LocalPod runs this checkout's treadle (as the image runs the installed one); the
    # manifests rendered here come from the treadle under test: the same files.
    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts}

    assert tree(SRC / "treadle" / "deploy" / "k8s") == tree(K8S)
