"""treadle's image in real containers, with Debian's podman (tests/image/test_image_podman.py).

The recipe: a local Debian base image (python:3.11-slim cannot be pulled here) made once with
debootstrap, ``runc`` with no default ulimits, ``deploy/Dockerfile`` built on the host's
network with its CA bundle and pip configuration, and the manifests that ``treadle deploy k8s``
renders played with ``podman kube play --network host``. What podman does not do as Kubernetes
does is transformed in the test's copy of the YAML, each in one place below (:func:`_podman_pod`):

* a Deployment becomes one Pod per replica it asks for, the migration Job one Pod run to
  completion; pods are named by the test, so their containers are ``<pod>-<container>``;
* the database Secret is a podman secret holding JSON (``secretKeyRef`` reads it so); the
  optional Secrets the test does not create are left out, as the kubelet leaves them unset;
* ``subPath`` on a ConfigMap volume is ignored: the langgraph.json is a ``hostPath`` file;
* HTTP probes would become ``curl`` inside the container, which the image does not have, and
  podman restarts a container whose probe fails: they are dropped, and the test GETs the same
  paths on the same ports from the host until they answer 200;
* with host networking every pod shares the host's ports: each container port gets a free port
  of its own, and env values and args that state the port are rewritten to it;
* podman 4.3 restarts a pod's init containers under ``restartPolicy: Always`` and then fails to
  remove them: the pods are played with ``Never`` (a lost worker stays lost, which the test
  wants); resource limits need a delegated cgroup controller and are dropped;
* Services, Ingress, NetworkPolicies and the ServiceAccount are not run.

The built image is tagged with a hash of the build context (the files git sees, the build
arguments and the base image), so an unchanged checkout is not built again; a new build keeps no
intermediate images and removes the test's older tags, so one image of the test stays.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from processes import free_port, subprocess_env

REPO = Path(__file__).resolve().parents[2]
GRAPHS = Path(__file__).resolve().parent / "graphs"
BASE_IMAGE = "localhost/debian-python:bookworm"
IMAGE_REPO = "localhost/treadle-image-test"
# Pods and secrets of a run are named treadle-image-<pid>-...: a run killed before its teardown
# leaves them behind, and the next run removes those of processes that are gone.
PREFIX = "treadle-image"
CONTAINERS_CONF = "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


class Podman:
    """The ``podman`` command, with this machine's containers.conf."""

    def __init__(self, exe: str, workdir: Path) -> None:
        self.exe = exe
        conf = workdir / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(self, *args: str, check: bool = True, timeout: float = 600,
                 stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        proc = self.popen(*args, stdin=subprocess.PIPE if stdin else None,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(stdin.decode() if stdin else None, timeout=timeout)
        except BaseException:
            # Interrupted (or too slow): SIGTERM lets podman clean up after itself (a build
            # killed outright leaves its working containers and half an image behind).
            proc.terminate()
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done

    def popen(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        """podman started in a session of its own: a signal it sends to its process group
        (twice, during a teardown, pytest got SIGTERM or SIGKILL while podman stopped pods)
        cannot reach the test."""
        return subprocess.Popen([self.exe, *args], env=self.env, text=True,
                                start_new_session=True, **kw)

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
            imported = self.popen(
                "import", "--change",
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "-", BASE_IMAGE, stdin=tar.stdout, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            assert tar.stdout is not None
            tar.stdout.close()  # podman's now: tar gets SIGPIPE if podman dies
            _out, err = imported.communicate(timeout=600)
            tar.wait(timeout=60)
            assert imported.returncode == 0, f"podman import failed: {err[-3000:]}"

    def image(self) -> str:
        """deploy/Dockerfile built on the local base with this directory's graphs as /app;
        not built again while the build context is unchanged."""
        build_args = [f"PYTHON_IMAGE={BASE_IMAGE}", f"GRAPHS_DIR={GRAPHS.relative_to(REPO)}"]
        base_id = self("image", "inspect", "--format", "{{.Id}}", BASE_IMAGE).stdout.strip()
        digest = context_hash([*build_args, base_id])
        ref = f"{IMAGE_REPO}:{digest or 'latest'}"
        if digest and self("image", "exists", ref, check=False).returncode == 0:
            return ref
        mounts = ["-v", "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro"]
        if Path("/etc/pip.conf").exists():
            mounts += ["-v", "/etc/pip.conf:/etc/pip.conf:ro"]
        args = [a for arg in build_args for a in ("--build-arg", arg)]
        # --layers=false: no intermediate images kept (the builder stage's is half a
        # gigabyte); the context changed, so its cached layers would be stale anyway.
        before = self._build_containers()
        try:
            self("build", "--layers=false", "--network", "host", *mounts,
                 "-f", str(REPO / "deploy" / "Dockerfile"), *args, "-t", ref, str(REPO),
                 timeout=1800)
        except BaseException:  # a build failed or interrupted leaves its working containers
            if stale := self._build_containers() - before:
                self("rm", "-f", *stale, check=False, timeout=120)
            raise
        listed = self("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_REPO,
                      check=False).stdout.split()
        for old in listed:  # the test's earlier builds (one in use elsewhere stays)
            if old != ref and old.startswith(f"{IMAGE_REPO}:"):
                self("rmi", old, check=False, timeout=120)
        return ref

    def _build_containers(self) -> set[str]:
        """The working containers of builds (buildah's, outside podman's own)."""
        listed = self("ps", "-a", "--external", "--no-trunc", "--format", "{{.ID}} {{.Names}}",
                      check=False).stdout.splitlines()
        return {line.split()[0] for line in listed
                if line.strip().endswith("-working-container")}

    def remove_leftovers(self) -> None:
        """Pods and secrets of earlier runs whose process is gone (killed before teardown)."""
        pattern = re.compile(rf"^{PREFIX}-(\d+)-")
        for kind in ("pod", "secret"):
            listed = self(kind, "ls" if kind == "secret" else "ps", "--format", "{{.Name}}",
                          check=False).stdout.split()
            stale = [n for n in listed if (m := pattern.match(n)) and not alive(int(m[1]))]
            if stale:
                self(kind, "rm", *(["-f"] if kind == "pod" else []), *stale, check=False,
                     timeout=120)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def context_hash(extra: list[str]) -> str | None:
    """A hash of the build context as git sees it (tracked and untracked, not ignored files:
    deploy/Dockerfile, src, the graphs), with ``extra``; None outside a git checkout."""
    try:
        listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "-co",
                                 "--exclude-standard"], check=True, capture_output=True,
                                timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    digest = hashlib.sha256("\0".join(extra).encode())
    for name in sorted(set(listed.split(b"\0")) - {b""}):
        path = REPO / os.fsdecode(name)
        if path.is_file():  # a tracked file deleted in the work tree is not in the context
            digest.update(name + b"\0" + str(path.stat().st_mode & 0o111).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@dataclass
class Pod:
    """A played pod: its name, its containers' ports on the host and the HTTP probes of the
    manifest (kind, container, URL on the host)."""

    name: str
    main: str  # the container's name in the manifest
    workload: str = ""  # the rendered Deployment it stands for, as Kind/name
    ports: dict[int, int] = field(default_factory=dict)  # containerPort -> host port
    named: dict[str, int] = field(default_factory=dict)  # port name -> containerPort
    probes: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def container(self) -> str:
        return f"{self.name}-{self.main}"

    def url(self, container_port: int, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[container_port]}{path}"


@dataclass
class Cluster:
    """The played pods: the API, the workers, and how to take them down; the image and the
    manifests as rendered (before the test's transformations)."""

    podman: Podman
    workdir: Path
    database_url: str
    prefix: str
    secret: str
    image: str = ""
    rendered: list[dict[str, Any]] = field(default_factory=list)
    api: Pod | None = None
    workers: dict[str, Pod] = field(default_factory=dict)  # pod name -> pod
    played: list[Path] = field(default_factory=list)

    @property
    def api_url(self) -> str:
        assert self.api is not None
        return self.api.url(self.api.named["http"], "")

    def pods(self) -> list[Pod]:
        return [*([self.api] if self.api is not None else []), *self.workers.values()]

    def play(self, docs: list[dict[str, Any]], name: str) -> None:
        path = self.workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.played.append(path)
        self.podman("kube", "play", "--network", "host", str(path), timeout=300)

    def state(self, container: str) -> tuple[str, int]:
        """The container's status (running, exited, ...) and exit code."""
        done = self.podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}",
                           container, check=False).stdout.split()
        return (done[0], int(done[1])) if len(done) == 2 else ("gone", -1)

    def logs(self, container: str) -> str:
        done = self.podman("logs", container, check=False)
        return (done.stdout + done.stderr)[-4000:]

    def wait_probes(self, pod: Pod, timeout: float = 240) -> None:
        """Each HTTP probe of the manifest answers 200 from the host, in the order the
        kubelet asks (startup, readiness, liveness)."""
        for _kind, _container, url in pod.probes:
            _wait_ok(self, url, pod.container, timeout)

    def down(self) -> None:
        for path in reversed(self.played):
            self.podman("kube", "down", str(path), check=False, timeout=120)
        pods = self.podman("pod", "ps", "-q", "--filter", f"name={self.prefix}-",
                           check=False).stdout.split()
        if pods:  # what a failed play left
            self.podman("pod", "rm", "-f", *pods, check=False, timeout=120)
        self.podman("secret", "rm", self.secret, check=False)


def render(image: str, secret: str, workers: int) -> list[dict[str, Any]]:
    """``treadle deploy k8s`` for the test's graphs: the dev overlay, ``workers`` worker
    replicas, the database URL in Secret ``secret``, no CronJob."""
    done = subprocess.run(
        [sys.executable, "-m", "treadle", "deploy", "k8s", "--overlay", "dev", "--image", image,
         "--config", str(GRAPHS / "langgraph.json"), "--worker-replicas", str(workers),
         "--database-secret", secret, "--no-cron"],
        env=subprocess_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def _secret_json(url: str) -> bytes:
    return json.dumps({"url": base64.b64encode(url.encode()).decode()}).encode()


def _podman_pod(name: str, template: dict[str, Any], graphs_file: Path, secret: str,
                env: dict[str, str]) -> tuple[dict[str, Any], Pod]:
    """A Deployment's or Job's pod template as a Pod podman plays (the quirks above)."""
    spec = copy.deepcopy(template["spec"])
    spec["restartPolicy"] = "Never"
    for key in ("topologySpreadConstraints", "serviceAccountName"):
        spec.pop(key, None)
    spec["volumes"] = [
        {"name": v["name"], "hostPath": {"path": str(graphs_file), "type": "File"}}
        if "configMap" in v else v for v in spec.get("volumes", [])]
    main = spec["containers"][0]
    pod = Pod(name, main["name"])
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    for container in containers:
        for port in container.get("ports", []):  # host networking: a free port of the host's
            pod.ports[int(port["containerPort"])] = free_port()
            if "name" in port:
                pod.named[port["name"]] = int(port["containerPort"])
    for container in containers:
        _container(container, pod, secret, env)
    doc = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "labels": dict(template["metadata"].get("labels", {}))},
           "spec": spec}
    return doc, pod


def _container(container: dict[str, Any], pod: Pod, secret: str, env: dict[str, str]) -> None:
    named = {p["name"]: int(p["containerPort"]) for p in container.pop("ports", []) if "name" in p}
    for kind in PROBES:
        probe = container.pop(kind, None)
        if probe is None:
            continue
        assert "httpGet" in probe, f"{pod.name} {kind}: only httpGet probes are checked"
        port = probe["httpGet"]["port"]
        port = int(port) if not isinstance(port, str) else _named_port(container, port, named)
        pod.probes.append((kind, container["name"], pod.url(port, probe["httpGet"]["path"])))
    container.pop("resources", None)

    def mapped(value: str) -> str:
        return str(pod.ports[int(value)]) if value.isdigit() and int(value) in pod.ports else value

    container["args"] = [mapped(str(a)) for a in container.get("args", [])]
    container["envFrom"] = [e for e in container.get("envFrom", []) if "secretRef" not in e]
    kept = []
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and ref["name"] != secret:
            assert ref.get("optional"), f"{pod.name}: Secret {ref['name']} is required"
            continue
        if var["name"] in env:
            continue
        if "value" in var:
            var = {**var, "value": mapped(str(var["value"]))}
        kept.append(var)
    container["env"] = kept + [{"name": k, "value": v} for k, v in env.items()]
    container["volumeMounts"] = [{k: v for k, v in m.items() if k != "subPath"}
                                 for m in container.get("volumeMounts", [])]


def _named_port(container: dict[str, Any], name: str, named: dict[str, int]) -> int:
    assert name in named, f"{container['name']}: a probe names port {name}, which it lacks"
    return named[name]


def start(podman: Podman, image: str, workdir: Path, database_url: str, workers: int,
          extra_env: dict[str, str]) -> Iterator[Cluster]:
    """Render the dev overlay for ``image``, run the migration, play the API and ``workers``
    worker pods and wait for their probes; yield the cluster, take it down after."""
    prefix = f"{PREFIX}-{os.getpid()}"
    secret = f"{prefix}-db"
    docs = render(image, secret, workers)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    graphs_cm = next(d for d in by_kind["ConfigMap"] if "langgraph.json" in d.get("data", {}))
    graphs_file = workdir / "langgraph.json"
    graphs_file.write_text(graphs_cm["data"]["langgraph.json"])
    graphs_file.chmod(0o644)
    env_cms = [d for d in by_kind["ConfigMap"] if d is not graphs_cm]

    cluster = Cluster(podman, workdir, database_url, prefix, secret, image=image, rendered=docs)
    secret_file = workdir / "secret.json"
    secret_file.write_bytes(_secret_json(database_url))
    podman("secret", "create", secret, str(secret_file))
    try:
        (job,) = by_kind["Job"]
        migrate, migrate_pod = _podman_pod(f"{prefix}-migrate", job["spec"]["template"],
                                           graphs_file, secret, {})
        cluster.play([*env_cms, migrate], "migrate")
        status = podman("wait", migrate_pod.container, timeout=300).stdout.strip()
        assert status == "0", cluster.logs(migrate_pod.container)

        docs_to_play = []
        for deployment in by_kind["Deployment"]:
            component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
            for i in range(int(deployment["spec"].get("replicas", 1))):
                name = f"{prefix}-{component}-{i}"
                env = {**extra_env, "IMAGE_E2E_POD": name} if component == "worker" else {}
                doc, pod = _podman_pod(name, deployment["spec"]["template"], graphs_file,
                                       secret, env)
                pod.workload = f"Deployment/{deployment['metadata']['name']}"
                docs_to_play.append(doc)
                if component == "api":
                    cluster.api = pod
                else:
                    cluster.workers[name] = pod
        assert cluster.api is not None and len(cluster.workers) == workers, docs_to_play
        cluster.play([*env_cms, *docs_to_play], "pods")
        for pod in [cluster.api, *cluster.workers.values()]:
            assert pod.probes, f"{pod.name} has no HTTP probe in the manifest"
            cluster.wait_probes(pod)
        yield cluster
    finally:
        cluster.down()


def _wait_ok(cluster: Cluster, url: str, container: str, timeout: float) -> None:
    """``url`` answers 200 from the host (what the dropped httpGet probe checked)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if cluster.state(container)[0] in ("exited", "stopped", "gone"):
            break
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 (within {timeout:.0f}s); "
                         f"{container}'s log:\n{cluster.logs(container)}")
