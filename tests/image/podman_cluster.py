"""treadle's image in real containers, with Debian's podman (tests/image/test_image_podman.py).

The recipe is ../shared/CONTAINERS.md's: a local Debian base image (python:3.11-slim cannot
be pulled here) made with debootstrap, ``runc`` with no default ulimits, the build on the
host's network with its CA bundle and pip configuration, and the manifests that
``treadle deploy k8s`` renders played with ``podman kube play --network host``. What podman
does not do as Kubernetes does is transformed in the YAML, each in one place below:

* the Deployments and the migration Job become Pods (one per replica we want), named by the
  test, so their containers are ``<pod>-<container>``;
* the database Secret is a podman secret holding JSON (``secretKeyRef`` reads it so); the
  optional Secrets no test creates are left out;
* ``subPath`` on a ConfigMap volume is ignored: the langgraph.json is a ``hostPath`` file;
* HTTP probes would become ``curl`` inside the container, which the image does not have, and
  podman restarts a container whose probe fails: they are dropped, and the test probes the
  same paths from the host;
* with host networking every pod shares the host's ports: each gets its own free port;
* podman 4.3 restarts a pod's init containers under ``restartPolicy: Always`` and then
  fails to remove them: the pods are played with ``Never`` (a lost worker stays lost, which
  is what the test wants);
* Services, Ingress, NetworkPolicies and the ServiceAccount are not run.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from processes import free_port

REPO = Path(__file__).resolve().parents[2]
GRAPHS = Path(__file__).resolve().parent / "graphs"
BASE_IMAGE = "localhost/debian-python:bookworm"
IMAGE = "localhost/treadle-image-test:latest"
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n"


class Podman:
    """The ``podman`` command, with this machine's containers.conf."""

    def __init__(self, exe: str, workdir: Path) -> None:
        self.exe = exe
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, check: bool = True, timeout: float = 600,
                 stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([self.exe, *args], env=self.env, capture_output=True,
                              timeout=timeout, input=stdin.decode() if stdin else None,
                              text=True)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def ensure_base_image(self) -> None:
        """Debian bookworm's Python as a local image, made with debootstrap once."""
        if self("image", "exists", BASE_IMAGE, check=False).returncode == 0:
            return
        debootstrap = shutil.which("debootstrap")
        if debootstrap is None:
            raise AssertionError("the image test needs debootstrap to make its base image "
                                 "(apt-get install debootstrap)")
        with tempfile.TemporaryDirectory() as scratch:
            root = Path(scratch) / "rootfs"
            subprocess.run([debootstrap, "--variant=minbase",
                            "--include=python3,python3-venv,python3-pip,python-is-python3",
                            "bookworm", str(root)], check=True, capture_output=True,
                           timeout=900)
            tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
            subprocess.run([self.exe, "import", "--change",
                            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                            "-", BASE_IMAGE], stdin=tar.stdout, env=self.env, check=True,
                           capture_output=True, timeout=600)
            tar.wait(timeout=60)

    def build(self) -> None:
        """deploy/Dockerfile on the local base, with this directory's graphs as /app."""
        mounts = ["-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"]
        if Path("/etc/pip.conf").exists():
            mounts += ["-v", "/etc/pip.conf:/etc/pip.conf:ro"]
        self("build", "--network", "host", *mounts, "-f", str(REPO / "deploy" / "Dockerfile"),
             "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}",
             "--build-arg", f"GRAPHS_DIR={GRAPHS.relative_to(REPO)}", "-t", IMAGE, str(REPO),
             timeout=1800)


@dataclass
class Cluster:
    """The played pods: the API's URL, the worker pods and their health ports."""

    podman: Podman
    workdir: Path
    database_url: str
    prefix: str
    api_port: int = 0
    workers: dict[str, int] = field(default_factory=dict)  # pod name -> health port
    played: list[Path] = field(default_factory=list)
    secret: str = ""

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def container(self, pod: str) -> str:
        return f"{pod}-worker"

    def play(self, docs: list[dict[str, Any]], name: str) -> None:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.played.append(path)
        self.podman("kube", "play", "--network", "host", str(path), timeout=300)

    def logs(self, container: str) -> str:
        done = self.podman("logs", container, check=False)
        return (done.stdout + done.stderr)[-4000:]

    def down(self) -> None:
        for path in reversed(self.played):
            self.podman("kube", "down", str(path), check=False, timeout=120)
        pods = self.podman("pod", "ps", "-q", "--filter", f"name={self.prefix}-",
                           check=False).stdout.split()
        if pods:  # what a failed play left
            self.podman("pod", "rm", "-f", *pods, check=False, timeout=120)
        if self.secret:
            self.podman("secret", "rm", self.secret, check=False)


def _secret_json(url: str) -> bytes:
    return json.dumps({"url": base64.b64encode(url.encode()).decode()}).encode()


def _pod(name: str, template: dict[str, Any], *, restart: str | None = None) -> dict[str, Any]:
    spec = copy.deepcopy(template["spec"])
    if restart:
        spec["restartPolicy"] = restart
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": dict(template["metadata"].get("labels", {}))},
            "spec": spec}


def _container_fixes(container: dict[str, Any], secret: str, env: dict[str, str]) -> None:
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        container.pop(probe, None)  # curl in the container: checked from the host instead
    container.pop("ports", None)  # host networking: the ports are the process's own
    container.pop("resources", None)  # cgroup limits need a delegated controller here
    container["envFrom"] = [e for e in container.get("envFrom", []) if "secretRef" not in e]
    kept = []
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and ref["name"] != secret:
            continue  # optional Secrets the test does not create
        if var["name"] in env:
            continue
        kept.append(var)
    container["env"] = kept + [{"name": k, "value": v} for k, v in env.items()]
    container["volumeMounts"] = [{k: v for k, v in m.items() if k != "subPath"}
                                 for m in container.get("volumeMounts", [])]


def _spec_fixes(spec: dict[str, Any], graphs_file: Path, secret: str,
                env: dict[str, str]) -> None:
    spec.pop("topologySpreadConstraints", None)
    spec.pop("serviceAccountName", None)
    spec["volumes"] = [
        {"name": v["name"], "hostPath": {"path": str(graphs_file), "type": "File"}}
        if "configMap" in v else v for v in spec.get("volumes", [])]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        _container_fixes(container, secret, env)


def start(podman: Podman, workdir: Path, database_url: str, workers: int,
          extra_env: dict[str, str]) -> Iterator[Cluster]:
    """Render the dev overlay for the image, migrate, and play one API and ``workers``
    worker pods; yield the cluster, take it down after."""
    from treadle.deploy.manifests import K8sOptions, render

    prefix = f"treadle-e2e-{os.getpid()}"
    secret = f"{prefix}-db"
    resources, _notes = render(K8sOptions(
        overlay="dev", image=IMAGE, config=GRAPHS / "langgraph.json", cron=False,
        database_secret=secret, allow_unauthenticated=True))
    docs = list(resources)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    graphs_cm = next(d for d in by_kind["ConfigMap"] if "langgraph.json" in d.get("data", {}))
    graphs_file = workdir / "langgraph.json"
    graphs_file.write_text(graphs_cm["data"]["langgraph.json"])
    graphs_file.chmod(0o644)
    env_cms = [d for d in by_kind["ConfigMap"] if d is not graphs_cm]

    cluster = Cluster(podman, workdir, database_url, prefix, secret=secret)
    secret_file = workdir / "secret.json"
    secret_file.write_bytes(_secret_json(database_url))
    podman("secret", "rm", secret, check=False)
    podman("secret", "create", secret, str(secret_file))
    try:
        migrate = _pod(f"{prefix}-migrate", next(iter(by_kind["Job"]))["spec"]["template"],
                       restart="Never")
        _spec_fixes(migrate["spec"], graphs_file, secret, {})
        cluster.play([*env_cms, migrate], "migrate")
        status = podman("wait", f"{prefix}-migrate-migrate", timeout=300).stdout.strip()
        assert status == "0", cluster.logs(f"{prefix}-migrate-migrate")

        deployments = {d["metadata"]["name"].rsplit("-", 1)[-1]: d for d in by_kind["Deployment"]}
        cluster.api_port = free_port()
        api = _pod(f"{prefix}-api", deployments["api"]["spec"]["template"], restart="Never")
        _spec_fixes(api["spec"], graphs_file, secret, {"TREADLE_PORT": str(cluster.api_port)})
        pods = [api]
        for i in range(workers):
            name, port = f"{prefix}-worker{i}", free_port()
            pod = _pod(name, deployments["worker"]["spec"]["template"], restart="Never")
            _spec_fixes(pod["spec"], graphs_file, secret, {**extra_env, "IMAGE_E2E_POD": name})
            args = pod["spec"]["containers"][0]["args"]
            args[args.index("--port") + 1] = str(port)
            cluster.workers[name] = port
            pods.append(pod)
        cluster.play([*env_cms, *pods], "pods")
        _wait_ok(cluster, f"{cluster.api_url}/ok", f"{prefix}-api-api")
        _wait_ok(cluster, f"{cluster.api_url}/readyz", f"{prefix}-api-api")
        for name, port in cluster.workers.items():
            _wait_ok(cluster, f"http://127.0.0.1:{port}/readyz", cluster.container(name))
        yield cluster
    finally:
        cluster.down()


def _wait_ok(cluster: Cluster, url: str, container: str, timeout: float = 240) -> None:
    """The probe path answers 200 from the host (what the dropped httpGet probe checked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        state = cluster.podman("inspect", "--format", "{{.State.Status}}", container,
                               check=False).stdout.strip()
        if state in ("exited", "stopped"):
            break
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 (within {timeout:.0f}s); "
                         f"{container}'s log:\n{cluster.logs(container)}")
