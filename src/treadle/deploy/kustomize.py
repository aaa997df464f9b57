"""The subset of kustomize that treadle's manifests use, in Python, so ``treadle deploy k8s``
needs no kubectl.

A kustomization may hold ``resources`` (YAML files, or directories holding a
kustomization), ``patches`` (``- path: file.yaml``: strategic-merge patches of built-in
kinds, each document naming its target by kind and name), ``images``, ``replicas``,
``namespace``, ``labels`` (``pairs`` on ``metadata.labels`` only) and, at the top,
``sortOptions`` (the output order: ``legacy``, with its ``orderFirst`` / ``orderLast``
kinds, or ``fifo``). Anything else is
refused in one line rather than rendered differently from ``kubectl kustomize``; a test
checks that both render the shipped overlays alike.

Strategic merge, as Kubernetes does it for the fields used here: maps merge key by key, a
``null`` removes the key, lists of containers, env vars, volumes and volume mounts merge by
their key (``name``; ``mountPath``), ports by port number, other lists are replaced.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from treadle.errors import ConfigError

__all__ = [
    "KUSTOMIZATION", "Resource", "build", "kind_order", "load_documents", "load_kustomization",
    "set_images", "set_namespace", "sort", "split_image", "transform",
]

Resource = dict[str, Any]

KUSTOMIZATION = "kustomization.yaml"
_FIELDS = {"apiVersion", "kind", "resources", "patches", "images", "replicas", "namespace", "labels",
           "sortOptions"}
# Kinds whose objects live outside namespaces (the namespace transformer skips them).
_CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "PersistentVolume", "StorageClass", "PriorityClass", "IngressClass", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ClusterTriggerAuthentication",
}
# Groups of the built-in kinds strategic merge knows ("" is the core group).
_BUILTIN_GROUPS = {"", "apps", "batch", "policy", "autoscaling", "networking.k8s.io"}
_REPLICATED = {"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"}
_MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "imagePullSecrets": "name", "volumeMounts": "mountPath",
}
# kustomize's legacy output order: these kinds first (in this order), then by group,
# version, kind and name.
_FIRST = [
    "Namespace", "ResourceQuota", "StorageClass", "CustomResourceDefinition", "ServiceAccount",
    "PodSecurityPolicy", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "ConfigMap",
    "Secret", "Endpoints", "Service", "LimitRange", "PriorityClass", "PersistentVolume",
    "PersistentVolumeClaim", "Deployment", "StatefulSet", "CronJob", "PodDisruptionBudget",
]
_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]


def build(directory: Path) -> list[Resource]:
    """The resources of the kustomization in ``directory``, transformed as it says."""
    spec = load_kustomization(directory)
    resources: list[Resource] = []
    for entry in _strings(spec, "resources", directory):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources += build(path)
        elif path.is_file():
            resources += load_documents(path)
        else:
            raise ConfigError(f"{directory / KUSTOMIZATION}: resource {entry} does not exist")
    transform(resources, spec, directory)
    return resources


def transform(resources: list[Resource], spec: dict[str, Any], directory: Path) -> None:
    """Apply the kustomization ``spec`` (of ``directory``) to ``resources``, in place."""
    for patch in _list(spec, "patches", directory):
        if not isinstance(patch, dict) or set(patch) != {"path"}:
            raise ConfigError(f"{directory / KUSTOMIZATION}: only `- path: file.yaml` patches "
                              "are supported (strategic merge, target from the patch)")
        for doc in load_documents(directory / str(patch["path"])):
            _patch(resources, doc, directory / str(patch["path"]))
    if "namespace" in spec:
        set_namespace(resources, str(spec["namespace"]))
    for entry in _list(spec, "labels", directory):
        if not isinstance(entry, dict) or entry.get("includeSelectors") or \
                entry.get("includeTemplates") or set(entry) - {"pairs", "includeSelectors",
                                                               "includeTemplates"}:
            raise ConfigError(f"{directory / KUSTOMIZATION}: labels support only `pairs` "
                              "(not includeSelectors or includeTemplates)")
        for resource in resources:
            labels = resource.setdefault("metadata", {}).setdefault("labels", {})
            labels.update({str(k): str(v) for k, v in (entry.get("pairs") or {}).items()})
    for entry in _list(spec, "replicas", directory):
        if not isinstance(entry, dict) or "name" not in entry or "count" not in entry:
            raise ConfigError(f"{directory / KUSTOMIZATION}: replicas entries need name and count")
        for resource in resources:
            if resource.get("kind") in _REPLICATED and _name(resource) == entry["name"]:
                resource.setdefault("spec", {})["replicas"] = int(entry["count"])
    for entry in _list(spec, "images", directory):
        if not isinstance(entry, dict) or "name" not in entry or \
                set(entry) - {"name", "newName", "newTag", "digest"}:
            raise ConfigError(f"{directory / KUSTOMIZATION}: images entries take name, newName, "
                              "newTag and digest")
        set_images(resources, lambda image, e=entry: _retag(image, e))


def load_documents(path: Path) -> list[Resource]:
    """The YAML documents of ``path`` (empty ones skipped), each a mapping."""
    try:
        docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    found = [d for d in docs if d is not None]
    for doc in found:
        if not isinstance(doc, dict) or not doc.get("kind") or not _name(doc):
            raise ConfigError(f"{path}: every document needs a kind and a metadata.name")
    return found


def set_namespace(resources: Iterable[Resource], namespace: str) -> None:
    for resource in resources:
        if resource.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            raise ConfigError("namespace: bindings' subjects are not rewritten by treadle's "
                              "renderer; use kubectl kustomize")
        if resource.get("kind") not in _CLUSTER_SCOPED:
            metadata = resource.setdefault("metadata", {})
            # Right after the name, where people look for it.
            name = metadata.get("name")
            rest = {k: v for k, v in metadata.items() if k not in ("name", "namespace")}
            metadata.clear()
            metadata.update(name=name, namespace=namespace, **rest)


def set_images(resources: Iterable[Resource], change: Any) -> None:
    """Replace every container's image by ``change(image)``."""
    for resource in resources:
        for container in _containers(resource):
            if isinstance(container.get("image"), str):
                container["image"] = change(container["image"])


def kind_order(resource: Resource, first: list[str] = _FIRST,
               last: list[str] = _LAST) -> tuple[Any, ...]:
    """Sort key giving kustomize's legacy output order: the kinds of ``first`` in that
    order, then the others by group, version, kind and name, then those of ``last``."""
    kind = str(resource.get("kind"))
    group, _, version = str(resource.get("apiVersion", "")).rpartition("/")
    rank = first.index(kind) if kind in first else \
        len(first) + 1 + last.index(kind) if kind in last else len(first)
    return (rank, group, version, kind, resource["metadata"].get("namespace") or "",
            _name(resource))


def sort(resources: list[Resource], spec: dict[str, Any], directory: Path) -> None:
    """Put ``resources`` in the output order of the top kustomization ``spec`` (its
    ``sortOptions``; kustomize ignores those of bases), in place."""
    options = spec.get("sortOptions")
    if options is None:
        resources.sort(key=kind_order)
        return
    where = directory / KUSTOMIZATION
    if not isinstance(options, dict) or options.get("order") not in ("legacy", "fifo") or \
            set(options) - {"order", "legacySortOptions"}:
        raise ConfigError(f"{where}: sortOptions takes order (legacy or fifo) and "
                          "legacySortOptions")
    if options["order"] == "fifo":
        return
    legacy = options.get("legacySortOptions") or {}
    if not isinstance(legacy, dict) or set(legacy) - {"orderFirst", "orderLast"}:
        raise ConfigError(f"{where}: legacySortOptions takes orderFirst and orderLast")
    first, last = (legacy.get(key, default) for key, default in
                   (("orderFirst", _FIRST), ("orderLast", _LAST)))
    if not all(isinstance(kinds, list) for kinds in (first, last)):
        raise ConfigError(f"{where}: orderFirst and orderLast are lists of kinds")
    resources.sort(key=lambda r: kind_order(r, [str(k) for k in first], [str(k) for k in last]))


# --- strategic merge ---------------------------------------------------------------------


def _patch(resources: list[Resource], patch: Resource, source: Path) -> None:
    group = str(patch.get("apiVersion", "")).rpartition("/")[0]
    if group not in _BUILTIN_GROUPS:
        raise ConfigError(f"{source}: treadle's renderer patches built-in kinds only, not "
                          f"{patch.get('kind')} ({patch.get('apiVersion')})")
    targets = [r for r in resources
               if r.get("kind") == patch.get("kind") and _name(r) == _name(patch)]
    if len(targets) != 1:
        raise ConfigError(f"{source}: patch of {patch.get('kind')}/{_name(patch)} matches "
                          f"{len(targets)} resources, not one")
    body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind")}
    metadata = {k: v for k, v in body.pop("metadata", {}).items() if k != "name"}
    if metadata:
        body["metadata"] = metadata
    _merge(targets[0], body, parent="")


def _merge(target: dict[str, Any], patch: dict[str, Any], *, parent: str) -> None:
    for key, value in patch.items():
        if str(key).startswith("$"):
            raise ConfigError(f"patch directive {key} is not supported by treadle's renderer")
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, parent=key)
        elif isinstance(value, list) and isinstance(target.get(key), list):
            merge_key = _MERGE_KEYS.get(key) or (
                ("containerPort" if parent in _MERGE_KEYS else "port") if key == "ports" else None)
            target[key] = _merge_list(target[key], value, merge_key, key) if merge_key \
                else copy.deepcopy(value)
        else:
            target[key] = copy.deepcopy(value)


def _merge_list(target: list[Any], patch: list[Any], key: str, field: str) -> list[Any]:
    merged = copy.deepcopy(target)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise ConfigError(f"patch: every item of {field} needs its {key}")
        same = [m for m in merged if isinstance(m, dict) and m.get(key) == item[key]]
        if same:
            _merge(same[0], item, parent=field)
        else:
            merged.append(copy.deepcopy(item))
    return merged


# --- helpers -----------------------------------------------------------------------------


def _containers(node: Any) -> Iterable[dict[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _containers(value)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry/name:tag@digest`` -> (name, tag, digest)."""
    name, _, digest = image.partition("@")
    head, _, last = name.rpartition("/")
    tag = None
    if ":" in last:
        last, tag = last.split(":", 1)
        name = f"{head}/{last}" if head else last
    return name, tag, digest or None


def _retag(image: str, entry: dict[str, Any]) -> str:
    name, tag, digest = split_image(image)
    if name != entry["name"]:
        return image
    name = str(entry.get("newName") or name)
    if entry.get("digest"):
        return f"{name}@{entry['digest']}"
    if entry.get("newTag"):
        tag, digest = str(entry["newTag"]), None
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _name(resource: Resource) -> str:
    metadata = resource.get("metadata")
    return str(metadata.get("name") or "") if isinstance(metadata, dict) else ""


def load_kustomization(directory: Path) -> dict[str, Any]:
    """The kustomization of ``directory``, refused when it uses more than this subset."""
    path = directory / KUSTOMIZATION
    if not path.is_file():
        raise ConfigError(f"{directory} has no {KUSTOMIZATION}")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(spec, dict):
        raise ConfigError(f"{path} is not a kustomization")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise ConfigError(f"{path}: {', '.join(unknown)} not supported by treadle's renderer "
                          "(resources, patches, images, replicas, namespace, labels, "
                          "sortOptions); use kubectl kustomize")
    return spec


def _list(spec: dict[str, Any], field: str, directory: Path) -> list[Any]:
    value = spec.get(field) or []
    if not isinstance(value, list):
        raise ConfigError(f"{directory / KUSTOMIZATION}: {field} must be a list")
    return value


def _strings(spec: dict[str, Any], field: str, directory: Path) -> list[str]:
    return [str(v) for v in _list(spec, field, directory)]
