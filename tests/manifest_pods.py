"""Run a rendered manifest's container on this machine, as the manifest states it.

There is no cluster here, so a pod's container becomes a local process: its argv is the
image's ENTRYPOINT (read from deploy/Dockerfile) followed by the container's ``args``
(or its ``command``), its environment is the ConfigMaps it names (``envFrom``) and its
literal and referenced ``env`` — Secret references are resolved from values the test
gives, never from the manifests — and the paths of the image (``/app``) map to a directory
of the test, where the ConfigMap files the pod mounts are written. Container ports map to
free local ports (the same mapping applies to env values and args stating the port), so
tests never depend on 2024 or 8081 being free.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from dockerfile_parse import DockerfileParser

from processes import SRC, free_port, terminate

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def image_config() -> tuple[list[str], list[str], str]:
    """ENTRYPOINT, CMD and WORKDIR of the Dockerfile's final stage."""
    import json

    parser = DockerfileParser(str(DOCKERFILE))
    final: list[dict[str, Any]] = []
    for instruction in parser.structure:
        if instruction["instruction"] == "FROM":
            final = []
        final.append(instruction)
    values = {i["instruction"]: i["value"] for i in final}
    return json.loads(values["ENTRYPOINT"]), json.loads(values["CMD"]), values["WORKDIR"]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    """The pod spec of a Deployment, Job or CronJob."""
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return dict(spec["template"]["spec"])


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"].startswith(name)):
            return doc
    raise AssertionError(f"no {kind} {name or ''} in the manifests")


@dataclass
class LocalPod:
    """One container of ``doc`` turned into a process (not started until :meth:`start`):
    the pod's container, or its init container named ``init``."""

    docs: list[dict[str, Any]]
    doc: dict[str, Any]
    app_dir: Path
    secrets: dict[tuple[str, str], str]
    field_refs: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    init: str | None = None
    ports: dict[int, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.spec = pod_spec(self.doc)
        assert len(self.spec["containers"]) == 1, "one container per pod"
        self.container: dict[str, Any] = self.spec["containers"][0] if self.init is None else \
            next(c for c in self.spec["initContainers"] if c["name"] == self.init)
        for port in self.container.get("ports", []):
            self.ports[int(port["containerPort"])] = free_port()
        self._mount()

    # --- as the manifest states it ------------------------------------------------------
    def argv(self) -> list[str]:
        entrypoint, cmd, _ = image_config()
        command = self.container.get("command") or entrypoint
        args = self.container.get("args", cmd if "command" not in self.container else [])
        argv = [self._local(a) for a in [*command, *args]]
        # The image's `treadle` is this checkout's, run by this interpreter.
        if argv[0] == "treadle":
            argv = [sys.executable, "-m", "treadle", *argv[1:]]
        return argv

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TREADLE_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        for source in self.container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self._configmap(source["configMapRef"]["name"])["data"])
            elif "secretRef" in source:
                ref = source["secretRef"]
                values = {k: v for (name, k), v in self.secrets.items() if name == ref["name"]}
                assert values or ref.get("optional"), f"Secret {ref['name']} is required"
                env.update(values)
        for var in self.container.get("env", []):
            if "value" in var:
                env[var["name"]] = self._local(str(var["value"]))
                continue
            source = var["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                if (ref["name"], ref["key"]) in self.secrets:
                    env[var["name"]] = self.secrets[(ref["name"], ref["key"])]
                else:  # as the kubelet: a missing optional key leaves the variable unset
                    assert ref.get("optional"), f"Secret {ref['name']} key {ref['key']} is required"
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                env[var["name"]] = self._configmap(ref["name"])["data"][ref["key"]]
            elif "fieldRef" in source:
                env[var["name"]] = self.field_refs[source["fieldRef"]["fieldPath"]]
            else:
                raise AssertionError(f"cannot resolve env {var}")
        return env

    def workdir(self) -> Path:
        _, _, workdir = image_config()
        return Path(self._local(self.container.get("workingDir", workdir)))

    def probe_url(self, kind: str) -> str:
        """The URL kubelet would GET for the container's ``kind`` probe (startupProbe, ...)."""
        probe = self.container[kind]["httpGet"]
        port = probe["port"]
        if isinstance(port, str):
            port = next(p["containerPort"] for p in self.container["ports"] if p["name"] == port)
        return f"http://127.0.0.1:{self.ports[int(port)]}{probe['path']}"

    # --- running -----------------------------------------------------------------------
    def start(self) -> LocalPod:
        log = self.log_path or self.app_dir.parent / f"{self.doc['metadata']['name']}.log"
        self.log_path = log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.argv(), env=self.env(), cwd=self.workdir(),
                                     stdout=self._out, stderr=subprocess.STDOUT)
        return self

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run to completion (a Job's container)."""
        return subprocess.run(self.argv(), env=self.env(), cwd=self.workdir(), text=True,
                              capture_output=True, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def wait_probe(self, kind: str, timeout: float) -> httpx.Response:
        """Poll the probe as kubelet does until it answers 200 (or time runs out)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv()} exited {self.proc.returncode}:\n{self.log()}")
            try:
                response = httpx.get(self.probe_url(kind), timeout=2)
                if response.status_code == 200:
                    return response
                last = response.status_code
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.1)
        raise AssertionError(f"{kind} never answered 200 (last: {last}):\n{self.log()}")

    def stop(self, timeout: float = 20) -> None:
        terminate(self.proc, timeout)
        if getattr(self, "_out", None) is not None:
            self._out.close()

    # --- helpers -----------------------------------------------------------------------
    def _local(self, value: str) -> str:
        if value == "/app" or value.startswith("/app/"):
            return str(self.app_dir) + value[len("/app"):]
        if value.isdigit() and int(value) in self.ports:
            return str(self.ports[int(value)])
        return value

    def _configmap(self, name: str) -> dict[str, Any]:
        for doc in self.docs:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"the manifests have no ConfigMap {name}")

    def _mount(self) -> None:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "configMap" in volume:
                data = self._configmap(volume["configMap"]["name"])["data"]
                target = Path(self._local(mount["mountPath"]))
                if "subPath" in mount:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(data[mount["subPath"]], encoding="utf-8")
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    for key, value in data.items():
                        (target / key).write_text(value, encoding="utf-8")
            else:
                assert "emptyDir" in volume, f"unexpected volume {volume}"
