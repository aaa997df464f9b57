"""``treadle deploy k8s``: the shipped overlays, rendered with the command's parameters.

The overlay is built first (:func:`treadle.deploy.kustomize.build`, as ``kubectl kustomize``
would), then each parameter given changes what it names: every container's image, the
namespace, the replica counts (the autoscaler's minimum where one owns the Deployment),
the Secret holding the database URL, the runs each worker executes, the langgraph.json
served, the example CronJob (its graph and input, or none), the database the pods may
reach (the only egress to its port), built-in auth, and the Namespace (rendered only when
asked). The prod overlay's public Ingress is refused unless the API authenticates its
callers (langgraph.json ``auth``, or ``--auth builtin``) or ``--allow-unauthenticated``
says it is meant. The output is in the overlay's order (its ``sortOptions``): the
Namespace, policies and settings, then the migrate Job, then the workloads.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from treadle import langgraph_json
from treadle.deploy import kustomize
from treadle.deploy.kustomize import Resource
from treadle.errors import ConfigError

__all__ = ["K8S", "KEDA_TARGETS", "OVERLAYS", "K8sOptions", "dump", "render", "write"]

#: The shipped kustomize tree (base, overlays/dev, overlays/prod, post-migrate).
K8S = Path(__file__).resolve().parent / "k8s"
OVERLAYS = ("dev", "prod")
#: Names in the base that parameters rewrite.
DATABASE_SECRET, DATABASE_KEY = "treadle-database", "url"
ENV_CONFIGMAP, GRAPHS_CONFIGMAP, GRAPHS_KEY = "treadle-env", "treadle-graphs", "langgraph.json"
API, WORKER, BATCH = "treadle-api", "treadle-worker", "treadle-batch"
DATABASE_EGRESS, DATABASE_PORT = "treadle-database-egress", 5432
AUTH_MODES = ("builtin", "none")
APP_DIR = "/app"  # where the image holds the graphs (deploy/Dockerfile)

# [registry[:port]/]path[:tag][@sha256:hex], lower-case path components (docker's grammar).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE = re.compile(
    rf"^(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?|localhost)/)?"
    rf"{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass
class K8sOptions:
    """What ``treadle deploy k8s`` was asked for (None: as the overlay has it)."""

    overlay: str = "prod"
    image: str | None = None
    namespace: str | None = None
    api_replicas: int | None = None
    worker_replicas: int | None = None
    worker_concurrency: int | None = None
    database_secret: str | None = None
    database_key: str | None = None
    config: Path | None = None
    cron_graph: str | None = None
    cron: bool = True
    cron_input: str | None = None
    create_namespace: bool = False
    post_migrate: bool = False
    auth: str | None = None  # "builtin": TREADLE_AUTH=builtin in the pods' settings
    allow_unauthenticated: bool = False  # a public API without auth, on purpose
    database_address: str | None = None  # IP, CIDR or a store URL whose host is an IP
    database_selector: str | None = None  # labels of the database's pods, k=v[,k=v]
    database_namespace: str | None = None  # the namespace of those pods


def render(options: K8sOptions) -> tuple[list[Resource], list[str]]:
    """The manifests, in the overlay's order, and what to tell the user (one line each,
    starting ``note:`` or ``warning:``)."""
    _validate(options)
    overlay = K8S / "overlays" / options.overlay
    spec = kustomize.load_kustomization(overlay)
    notes: list[str] = []
    placeholder = _placeholder(options, spec)
    if placeholder:
        notes.append(f"warning: the image {placeholder} is a placeholder, not an image of your "
                     "graphs: pass --image REGISTRY/NAME:TAG (or TREADLE_DEPLOY_IMAGE), built "
                     "with deploy/Dockerfile")
    if options.post_migrate:
        docs = _post_migrate(overlay)
    else:
        docs = kustomize.build(overlay)
    if options.image:
        image = options.image
        kustomize.set_images(docs, lambda _: image)
        # A Job's pod template cannot change: each image gets a Job of its own.
        suffix = hashlib.sha256(image.encode()).hexdigest()[:8]
        for doc in _kind(docs, "Job"):
            doc["metadata"]["name"] = f"{doc['metadata']['name']}-{suffix}"
    if options.namespace:
        kustomize.set_namespace(docs, options.namespace)
    if options.database_secret or options.database_key:
        _database_secret(docs, options.database_secret or DATABASE_SECRET,
                         options.database_key or DATABASE_KEY)
    if not options.post_migrate:
        if options.api_replicas is not None:
            _replicas(docs, API, options.api_replicas)
        if options.worker_replicas is not None:
            _replicas(docs, WORKER, options.worker_replicas)
        if options.worker_concurrency is not None:
            _env_configmap(docs)["data"]["TREADLE_WORKER_CONCURRENCY"] = \
                str(options.worker_concurrency)
        _tie_keda_target(docs)
        _cron(docs, options)  # first: no note about a CronJob left out on purpose
        if options.config is not None or options.cron_graph is not None:
            notes += _graphs(docs, options)
        notes += _auth(docs, options)
        notes += _database_egress(docs, options)
    if options.create_namespace:
        docs.append(_namespace(options.namespace or str(spec["namespace"]), spec))
    kustomize.sort(docs, spec, overlay)
    return docs, notes


def dump(docs: list[Resource]) -> str:
    """The documents as one YAML stream (multi-line strings as literal blocks)."""
    return str(yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                             allow_unicode=True, width=100))


def write(docs: list[Resource], directory: Path) -> list[Path]:
    """One file per document in ``directory`` (made if missing). A directory written
    before is cleared of the files it got then; any other non-empty one is refused."""
    marker = directory / ".treadle-deploy"
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--output {directory} is a file, not a directory")
    if directory.is_dir() and any(directory.iterdir()):
        if not marker.is_file():
            raise ConfigError(f"--output {directory} is not empty (and was not written by "
                              "treadle deploy k8s): choose a new directory")
        for name in marker.read_text(encoding="utf-8").split():
            if "/" not in name and name.endswith(".yaml"):
                (directory / name).unlink(missing_ok=True)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, doc in enumerate(docs, 1):
        path = directory / f"{i:02d}-{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"
        path.write_text(dump([doc]), encoding="utf-8")
        written.append(path)
    marker.write_text("".join(f"{p.name}\n" for p in written), encoding="utf-8")
    return written


# --- parameters --------------------------------------------------------------------------


def _validate(options: K8sOptions) -> None:
    if options.overlay not in OVERLAYS:
        raise ConfigError(f"unknown overlay {options.overlay!r}: use {' or '.join(OVERLAYS)}")
    if options.image is not None and not _IMAGE.match(options.image):
        raise ConfigError(f"bad image reference {options.image!r}: expected "
                          "[registry/]name[:tag][@sha256:digest], e.g. ghcr.io/acme/agents:1.2.0")
    for flag, value in (("--namespace", options.namespace),
                        ("--database-secret", options.database_secret)):
        if value is not None and (len(value) > 63 or not _LABEL.match(value)):
            raise ConfigError(f"bad {flag} {value!r}: lower-case letters, digits and '-', "
                              "at most 63 characters")
    if options.database_key is not None and not _SECRET_KEY.match(options.database_key):
        raise ConfigError(f"bad --database-secret-key {options.database_key!r}: letters, "
                          "digits, '-', '_' and '.'")
    for flag, count in (("--api-replicas", options.api_replicas),
                        ("--worker-replicas", options.worker_replicas),
                        ("--worker-concurrency", options.worker_concurrency)):
        if count is not None and count < 1:
            raise ConfigError(f"{flag} must be at least 1, not {count}")
    if options.post_migrate and (options.config or options.cron_graph or options.cron_input
                                 or not options.cron):
        raise ConfigError("--post-migrate renders the post-migration Job only: it takes no "
                          "--config, --cron-graph, --cron-input or --no-cron")
    if options.auth is not None and options.auth not in AUTH_MODES:
        raise ConfigError(f"unknown --auth {options.auth!r}: use builtin (API keys and JWTs, "
                          'TREADLE_AUTH=builtin) or none; custom auth is langgraph.json\'s "auth"')
    if options.database_namespace and not options.database_selector:
        raise ConfigError("--database-namespace names where the --database-selector pods run: "
                          "pass --database-selector too")
    if options.post_migrate and (options.database_address or options.database_selector):
        raise ConfigError("--post-migrate renders the post-migration Job only: it takes no "
                          "--database-address or --database-selector")
    if not options.cron and (options.cron_graph or options.cron_input):
        raise ConfigError("--no-cron leaves the example CronJob out: drop --cron-graph and "
                          "--cron-input, or --no-cron")
    if options.cron_input is not None:
        try:
            json.loads(options.cron_input)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--cron-input is not valid JSON ({exc.msg} at column "
                              f"{exc.colno}): pass the graph's input, e.g. "
                              """'{"messages": [...]}'""") from None


#: Registries of documentation examples (RFC 2606): never an image anyone pushed.
_EXAMPLE_REGISTRY = re.compile(r"^([a-z0-9-]+\.)*example\.(com|org|net)(:[0-9]+)?/")


def _placeholder(options: K8sOptions, spec: dict[str, Any]) -> str | None:
    """The image the manifests would name when it is not a real one (None when it is)."""
    if options.image is not None:
        return options.image if _EXAMPLE_REGISTRY.match(options.image) else None
    for entry in spec.get("images") or []:
        if entry.get("name") == "treadle":
            name = str(entry.get("newName") or "treadle")
            return f"{name}@{entry['digest']}" if entry.get("digest") else \
                f"{name}:{entry.get('newTag') or 'latest'}"
    return "treadle"


def _namespace(name: str, spec: dict[str, Any]) -> Resource:
    """The Namespace, labelled as the overlay labels everything; its pods must meet the
    restricted Pod Security Standard (every treadle pod does)."""
    labels = {str(k): str(v) for entry in spec.get("labels") or [] for k, v in
              (entry.get("pairs") or {}).items()}
    labels.update({"app.kubernetes.io/name": "treadle",
                   "pod-security.kubernetes.io/enforce": "restricted"})
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _cron(docs: list[Resource], options: K8sOptions) -> None:
    for cron in _kind(docs, "CronJob"):
        if not options.cron:
            docs.remove(cron)
        elif options.cron_input is not None:
            args = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
            args[args.index("--input") + 1] = options.cron_input


def _post_migrate(overlay: Path) -> list[Resource]:
    """The post-migration Job, with the overlay's namespace, labels and images."""
    docs = kustomize.build(K8S / "post-migrate")
    spec = kustomize.load_kustomization(overlay)
    kustomize.transform(docs, {k: spec[k] for k in ("namespace", "labels", "images") if k in spec},
                        overlay)
    return docs


def _database_secret(docs: list[Resource], name: str, key: str) -> None:
    for ref in _walk(docs):
        secret = ref.get("secretKeyRef")
        if isinstance(secret, dict) and secret.get("name") == DATABASE_SECRET:
            secret.update(name=name, key=key)
    for auth in _kind(docs, "TriggerAuthentication"):
        for target in auth["spec"].get("secretTargetRef", []):
            if target.get("name") == DATABASE_SECRET:
                target.update(name=name, key=key)


def _replicas(docs: list[Resource], deployment: str, count: int) -> None:
    """The autoscaler's minimum when one scales ``deployment``, else its replicas."""
    scaled = False
    for hpa in _kind(docs, "HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"].get("name") == deployment:
            hpa["spec"]["minReplicas"] = count
            hpa["spec"]["maxReplicas"] = max(count, hpa["spec"].get("maxReplicas", count))
            scaled = True
    for so in _kind(docs, "ScaledObject"):
        if so["spec"]["scaleTargetRef"].get("name") == deployment:
            so["spec"]["minReplicaCount"] = count
            so["spec"]["maxReplicaCount"] = max(count, so["spec"].get("maxReplicaCount", count))
            scaled = True
    if not scaled:
        for doc in _kind(docs, "Deployment"):
            if doc["metadata"]["name"] == deployment:
                doc["spec"]["replicas"] = count


#: KEDA trigger -> the setting that is its target per worker pod.
KEDA_TARGETS = {"runs": "TREADLE_WORKER_CONCURRENCY", "tasks": "TREADLE_WORKER_TASK_SLOTS"}


def _tie_keda_target(docs: list[Resource]) -> None:
    """A trigger's target is what one worker pod takes at once (KEDA_TARGETS)."""
    settings = _env_configmap(docs)["data"]
    for so in _kind(docs, "ScaledObject"):
        for trigger in list(so["spec"].get("triggers", [])):
            setting = KEDA_TARGETS.get(trigger.get("name", ""))
            if setting and settings.get(setting) is not None:
                if str(settings[setting]) == "0":  # e.g. no task slots: nothing to scale on
                    so["spec"]["triggers"].remove(trigger)
                else:
                    trigger["metadata"]["targetQueryValue"] = str(settings[setting])


def _graphs(docs: list[Resource], options: K8sOptions) -> list[str]:
    notes: list[str] = []
    cm = _one(docs, "ConfigMap", GRAPHS_CONFIGMAP)
    if options.config is not None:
        cm["data"][GRAPHS_KEY] = _read_config(options.config)
    source = str(options.config) if options.config is not None else "the overlay's langgraph.json"
    graphs = _graph_refs(cm["data"][GRAPHS_KEY], source, notes)
    for cron in _kind(docs, "CronJob"):
        container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        if options.cron_graph is not None:
            if options.cron_graph not in graphs:
                raise ConfigError(f"--cron-graph {options.cron_graph!r} is not a graph of "
                                  f"{source} (it has {', '.join(graphs)})")
            container["args"][1] = graphs[options.cron_graph]
        elif container["args"][1] not in graphs.values():
            docs.remove(cron)
            notes.append(f"note: left out CronJob {cron['metadata']['name']}: it runs "
                         f"{container['args'][1]}, which {source} does not serve; pass "
                         "--cron-graph NAME to schedule one of its graphs")
    return notes


def _read_config(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"--config {path} not found: pass the langgraph.json to serve") from None
    except OSError as exc:
        raise ConfigError(f"cannot read --config {path}: {exc.strerror or exc}") from exc
    _graph_refs(text, source=str(path))
    return text if text.endswith("\n") else text + "\n"


def _graph_refs(text: str, source: str = "langgraph.json",
                notes: list[str] | None = None) -> dict[str, str]:
    """{name: REF as seen inside the image} of a langgraph.json's graphs; its keys are
    checked as the server checks them (unknown ones are added to ``notes``)."""
    doc = langgraph_json.parse(text, source)
    found = langgraph_json.check(doc, source)
    if notes is not None:
        notes += found.warnings
    return langgraph_json.graph_refs(
        doc, source, lambda target: target if target.startswith("/") else
        posixpath.normpath(posixpath.join(APP_DIR, target)))


def _auth(docs: list[Resource], options: K8sOptions) -> list[str]:
    """Refuse a prod overlay whose public Ingress would serve an API anyone may call."""
    settings = _env_configmap(docs)["data"]
    if options.auth is not None:
        settings["TREADLE_AUTH"] = options.auth
    builtin = str(settings.get("TREADLE_AUTH", "none")) == "builtin"
    graphs = _one(docs, "ConfigMap", GRAPHS_CONFIGMAP)["data"][GRAPHS_KEY]
    custom = langgraph_json.parse(graphs, "langgraph.json").get("auth") is not None
    if builtin or custom or not _kind(docs, "Ingress"):
        return []
    if options.overlay == "prod" and not options.allow_unauthenticated:
        raise ConfigError(
            "the prod overlay's Ingress would make an API without authentication public: "
            'configure auth (langgraph.json "auth" with --config, or --auth builtin for API '
            "keys and JWTs) or pass --allow-unauthenticated if something in front of it "
            "authenticates every request")
    return ["warning: the API has no authentication and its Ingress is public: anyone who "
            "reaches it can run your graphs and read every thread (see docs/security.md)"]


_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*"
                        r"[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def _database_egress(docs: list[Resource], options: K8sOptions) -> list[str]:
    """The only egress to the database's port: to its address or to its pods."""
    policy = next((p for p in _kind(docs, "NetworkPolicy")
                   if p["metadata"]["name"] == DATABASE_EGRESS), None)
    if policy is None:
        return []
    peers: list[dict[str, Any]] = []
    if options.database_address:
        peers.append({"ipBlock": {"cidr": _database_cidr(options.database_address)}})
    if options.database_selector:
        peer: dict[str, Any] = {"podSelector": {"matchLabels": _labels(
            options.database_selector)}}
        if options.database_namespace:
            peer["namespaceSelector"] = {"matchLabels": {
                "kubernetes.io/metadata.name": options.database_namespace}}
        peers.append(peer)
    if peers:
        policy["spec"]["egress"][0]["to"] = peers
        return []
    selector = policy["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"]
    shown = ",".join(f"{k}={v}" for k, v in selector.items())
    return [f"note: the pods may reach PostgreSQL (port {DATABASE_PORT}) only on pods labelled "
            f"{shown} in their namespace: pass --database-address IP/CIDR (a managed "
            "database) or --database-selector LABELS [--database-namespace NS]"]


def _database_cidr(value: str) -> str:
    host = value
    if "://" in value:  # a store URL: its host (the URL, which may hold a password, is not shown)
        from urllib.parse import urlsplit

        try:
            host = urlsplit(value).hostname or ""
        except ValueError:
            host = ""
        if not host:
            raise ConfigError("--database-address: the store URL names no host; pass the "
                              "database's IP address or CIDR")
    try:
        return str(ipaddress.ip_network(host, strict=False))
    except ValueError:
        shown = "the store URL's host" if "://" in value else repr(value)
        raise ConfigError(f"--database-address: {shown} is not an IP address or CIDR (a "
                          "NetworkPolicy cannot name a host): pass the database's IP "
                          "address, or --database-selector for database pods") from None


def _labels(value: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in value.split(","):
        key, sep, val = pair.strip().partition("=")
        if not sep or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(val) or len(val) > 63:
            raise ConfigError(f"bad --database-selector {value!r}: labels as key=value, "
                              "comma-separated (e.g. app.kubernetes.io/name=postgresql)")
        labels[key] = val
    return labels


def _env_configmap(docs: list[Resource]) -> Resource:
    cm = _one(docs, "ConfigMap", ENV_CONFIGMAP)
    cm.setdefault("data", {})
    return cm


def _one(docs: list[Resource], kind: str, name: str) -> Resource:
    for doc in _kind(docs, kind):
        if doc["metadata"]["name"] == name:
            return doc
    raise ConfigError(f"the overlay has no {kind} {name}")


def _kind(docs: list[Resource], kind: str) -> list[Resource]:
    return [d for d in docs if d.get("kind") == kind]


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no types
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
