"""`treadle deploy k8s` without a cluster: the rendered manifests validate against
Kubernetes' and KEDA's schemas, say what operations need (probes, grace periods, security,
Secret references only), follow the parameters, and match the image deploy/Dockerfile builds."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from manifest_pods import DOCKERFILE, REPO, image_config, pod_spec
from processes import SERVER_GRAPHS
from treadle.cli import run_cli
from treadle.deploy import kustomize
from treadle.deploy.dependencies import pip_arguments
from treadle.deploy.manifests import K8S, KEDA_TARGETS, K8sOptions, dump, render, write
from treadle.errors import ConfigError


def _options(**given: Any) -> K8sOptions:
    """Options as the shipped overlays render them: the prod overlay's refusal of a public
    API without auth is tested on its own (test_deploy.py)."""
    return K8sOptions(**{"allow_unauthenticated": True, **given})

DATA = Path(__file__).resolve().parents[1] / "data"
EXAMPLES = REPO / "examples"
#: The release kubectl here speaks, and the newest one kubernetes-validate knows.
K8S_VERSIONS = ["1.32.0", kubernetes_validate.latest_version()]
DIGEST = "sha256:" + "ab" * 32

OPTION_SETS = {
    "dev": _options(overlay="dev"),
    "prod": _options(overlay="prod"),
    "prod-custom": _options(
        overlay="prod", image="ghcr.io/acme/agents:1.2.0", namespace="agents", api_replicas=4,
        worker_replicas=3, worker_concurrency=16, database_secret="pg", database_key="dsn",
        config=SERVER_GRAPHS / "langgraph.json", cron_graph="chain"),
    "dev-custom": _options(
        overlay="dev", image=f"registry.local:5000/team/agents@{DIGEST}", api_replicas=2,
        worker_replicas=5, config=EXAMPLES / "langgraph.json"),
    "prod-post-migrate": _options(overlay="prod", post_migrate=True, image="agents:2",
                                    namespace="agents"),
    "dev-post-migrate": _options(overlay="dev", post_migrate=True),
    "dev-namespace-no-cron": _options(overlay="dev", namespace="agents-dev",
                                        create_namespace=True, cron=False),
    "prod-namespace-cron-input": _options(overlay="prod", create_namespace=True,
                                            cron_input='{"text": "From the flag."}'),
}


def _render(name: str) -> list[dict[str, Any]]:
    return list(render(OPTION_SETS[name])[0])


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    assert len(found) == 1, (kind, name, [d["metadata"]["name"] for d in docs])
    return found[0]


def _pods(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(d, pod_spec(d)) for d in docs if d["kind"] in ("Deployment", "Job", "CronJob")]


def _containers(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every container of every pod, init containers included."""
    return [(d, c) for d, spec in _pods(docs)
            for c in [*spec.get("initContainers", []), *spec["containers"]]]


# --- schemas --------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """A CRD schema that rejects unknown fields, as kubectl's strict field validation does."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and \
                not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


def _crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    validators = {}
    for path in sorted((DATA / "keda").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


CRDS = _crd_validators()


def _validate(doc: dict[str, Any], version: str) -> None:
    key = (doc["apiVersion"], doc["kind"])
    if key in CRDS:
        errors = sorted(CRDS[key].iter_errors(doc), key=str)
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors[0].message}"
        return
    kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_every_manifest_validates(name: str, version: str) -> None:
    docs = _render(name)
    assert docs
    for doc in docs:
        _validate(doc, version)


def test_the_validators_reject_unknown_fields() -> None:
    docs = _render("prod")
    deployment = copy.deepcopy(_one(docs, "Deployment", "treadle-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(deployment, K8S_VERSIONS[0])
    scaled = copy.deepcopy(_one(docs, "ScaledObject", "treadle-worker"))
    scaled["spec"]["minReplicas"] = 2
    with pytest.raises(AssertionError, match="minReplicas"):
        _validate(scaled, K8S_VERSIONS[0])
    scaled = copy.deepcopy(_one(docs, "ScaledObject", "treadle-worker"))
    scaled["spec"]["triggers"][0]["metadata"]["targetQueryValue"] = 8  # KEDA wants strings
    with pytest.raises(AssertionError):
        _validate(scaled, K8S_VERSIONS[0])


def test_what_each_overlay_holds() -> None:
    kinds = {n: sorted({d["kind"] for d in _render(n)}) for n in ("dev", "prod")}
    common = ["ConfigMap", "CronJob", "Deployment", "Ingress", "Job", "NetworkPolicy", "Service",
              "ServiceAccount"]
    assert kinds["dev"] == common
    assert kinds["prod"] == sorted(common + ["HorizontalPodAutoscaler", "PodDisruptionBudget",
                                             "ScaledObject", "TriggerAuthentication"])
    assert [d["kind"] for d in _render("prod-post-migrate")] == ["Job"]
    for name in OPTION_SETS:
        assert not _kind(_render(name), "Secret")  # referenced, never written


# --- what operations need -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dev", "prod", "prod-custom"])
def test_probes_use_the_endpoints_on_declared_ports(name: str) -> None:
    docs = _render(name)
    for deployment, port in (("treadle-api", 2024), ("treadle-worker", 8081)):
        container = pod_spec(_one(docs, "Deployment", deployment))["containers"][0]
        declared = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert list(declared.values()) == [port]
        paths = {kind: container[kind]["httpGet"]["path"]
                 for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert paths == {"startupProbe": "/healthz", "livenessProbe": "/healthz",
                         "readinessProbe": "/readyz"}
        for kind in paths:
            assert container[kind]["httpGet"]["port"] in declared


@pytest.mark.parametrize("name", ["dev", "prod", "prod-custom"])
def test_grace_periods_cover_draining(name: str) -> None:
    docs = _render(name)
    settings = _one(docs, "ConfigMap", "treadle-env")["data"]
    worker = pod_spec(_one(docs, "Deployment", "treadle-worker"))
    assert worker["terminationGracePeriodSeconds"] >= float(settings["TREADLE_DRAIN_TIMEOUT"]) + 10
    api = pod_spec(_one(docs, "Deployment", "treadle-api"))
    pre_stop = api["containers"][0]["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    uvicorn_graceful = 5
    assert api["terminationGracePeriodSeconds"] >= \
        float(pre_stop[1]) + float(settings["TREADLE_SHUTDOWN_DELAY"]) + uvicorn_graceful + 5


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_pods_are_locked_down(name: str) -> None:
    uid = int(_dockerfile_user().split(":")[0])
    for doc, spec in _pods(_render(name)):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == uid  # the image's user
        assert spec["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]], doc["metadata"]["name"]
            assert set(container["resources"]) == {"requests", "limits"}
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_the_database_url_comes_from_a_secret(name: str) -> None:
    options = OPTION_SETS[name]
    secret = (options.database_secret or "treadle-database", options.database_key or "url")
    docs = _render(name)
    for doc, container in _containers(docs):
        store = [e for e in container["env"] if e["name"] == "TREADLE_STORE"]
        assert len(store) == 1, doc["metadata"]["name"]
        ref = store[0]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == secret
    for cm in _kind(docs, "ConfigMap"):
        assert "TREADLE_STORE" not in cm["data"]
        assert "postgresql://" not in json.dumps(cm)
    for auth in _kind(docs, "TriggerAuthentication"):
        assert [(t["name"], t["key"]) for t in auth["spec"]["secretTargetRef"]] == [secret]


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_security_secrets_come_from_an_optional_secret(name: str) -> None:
    # Encryption keys, the webhook signing secret and the JWT secret reach the API and the
    # worker (the batch Job opens the store: it needs the keys) from treadle-security.
    wanted = {"TREADLE_ENCRYPTION_KEYS": "encryption-keys", "TREADLE_WEBHOOK_SECRET":
              "webhook-secret", "TREADLE_JWT_SECRET": "jwt-secret"}
    docs = _render(name)
    seen: dict[str, set[str]] = {}
    for _doc, container in _containers(docs):
        if container["name"] not in ("api", "worker", "batch"):
            continue
        for env in container["env"]:
            if env["name"] in wanted:
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref == {"name": "treadle-security", "key": wanted[env["name"]],
                               "optional": True}
                seen.setdefault(container["name"], set()).add(env["name"])
    for deployment in _kind(docs, "Deployment"):
        [main] = deployment["spec"]["template"]["spec"]["containers"]
        assert seen.get(main["name"]) == set(wanted), main["name"]
    if "batch" in seen:
        assert seen["batch"] == {"TREADLE_ENCRYPTION_KEYS"}
    for cm in _kind(docs, "ConfigMap"):
        assert not set(wanted) & set(cm["data"])


def test_pods_do_not_migrate_the_job_does() -> None:
    for name in ("dev", "prod"):
        docs = _render(name)
        assert _one(docs, "ConfigMap", "treadle-env")["data"]["TREADLE_AUTO_MIGRATE"] == "false"
        job = pod_spec(_one(docs, "Job", "treadle-migrate-pre"))["containers"][0]
        assert job["args"] == ["migrate", "--phase", "pre"]
    post = pod_spec(_render("dev-post-migrate")[0])["containers"][0]
    assert post["args"] == ["migrate", "--phase", "post"]


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_every_pod_using_the_store_waits_for_the_migrate_job(name: str) -> None:
    """Applied all at once, the API, worker and batch pods wait in an init container until
    the migrate Job has applied what their image needs (for as long as the Job may run)."""
    docs = _render(name)
    jobs = [d for d in _kind(docs, "Job") if d["metadata"]["name"].startswith("treadle-migrate")]
    deadline = max((j["spec"]["activeDeadlineSeconds"] for j in jobs), default=900)
    for doc, spec in _pods(docs):
        if doc["kind"] == "Job":
            assert "initContainers" not in spec  # the migrate Jobs themselves do not wait
            continue
        (init,) = spec["initContainers"]
        main = spec["containers"][0]
        assert init["name"] == "wait-for-schema"
        assert init["args"][:3] == ["migrate", "--check", "--wait"]
        assert float(init["args"][3]) >= deadline
        assert init["image"] == main["image"]  # the schema this image needs
        assert init["envFrom"][0] == main["envFrom"][0]  # treadle-env: TREADLE_AUTO_MIGRATE
        assert [e for e in init["env"] if e["name"] == "TREADLE_STORE"] == \
            [e for e in main["env"] if e["name"] == "TREADLE_STORE"]


def _order(docs: list[dict[str, Any]]) -> list[str]:
    return [d["kind"] for d in docs]


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_the_output_order_puts_the_migrate_job_before_the_workloads(name: str) -> None:
    kinds = _order(_render(name))
    if "Namespace" in kinds:
        assert kinds[0] == "Namespace"
    if "Job" not in kinds or "Deployment" not in kinds:
        return
    job = kinds.index("Job")
    for kind in ("ServiceAccount", "NetworkPolicy", "ConfigMap"):
        assert max(i for i, k in enumerate(kinds) if k == kind) < job, kinds
    for kind in ("Deployment", "CronJob", "HorizontalPodAutoscaler", "ScaledObject"):
        assert all(i > job for i, k in enumerate(kinds) if k == kind), kinds


def test_the_overlays_state_that_order_for_kubectl_too() -> None:
    # `kubectl apply -k` orders by the overlay's sortOptions (tests/e2e compares the two).
    for overlay in ("dev", "prod"):
        spec = kustomize.load_kustomization(K8S / "overlays" / overlay)
        first = spec["sortOptions"]["legacySortOptions"]["orderFirst"]
        assert first.index("Job") < first.index("Deployment") < first.index("CronJob")
        assert first[0] == "Namespace"


def test_sort_options_of_the_subset(tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}}
    docs = [copy.deepcopy(DEPLOYMENT), job, cm]
    kustomize.sort(docs, {}, tmp_path)  # kustomize's default: Deployments before Jobs
    assert _order(docs) == ["ConfigMap", "Deployment", "Job"]
    kustomize.sort(docs, {"sortOptions": {"order": "legacy", "legacySortOptions": {
        "orderFirst": ["Job", "ConfigMap"], "orderLast": []}}}, tmp_path)
    assert _order(docs) == ["Job", "ConfigMap", "Deployment"]
    docs.reverse()
    kustomize.sort(docs, {"sortOptions": {"order": "fifo"}}, tmp_path)
    assert _order(docs) == ["Deployment", "ConfigMap", "Job"]
    for bad in ({"order": "alphabetical"}, {"order": "legacy", "legacySortOptions": {"x": 1}}):
        with pytest.raises(ConfigError, match="sortOptions|legacySortOptions"):
            kustomize.sort(docs, {"sortOptions": bad}, tmp_path)


def test_the_namespace_when_asked() -> None:
    assert not _kind(_render("prod"), "Namespace")
    for name, expected in (("dev-namespace-no-cron", "agents-dev"),
                           ("prod-namespace-cron-input", "treadle")):
        docs = _render(name)
        namespace = docs[0]
        assert namespace["kind"] == "Namespace" and namespace["metadata"]["name"] == expected
        assert {d["metadata"].get("namespace") for d in docs[1:]} == {expected}
        labels = namespace["metadata"]["labels"]
        # Every pod meets the restricted Pod Security Standard (test_pods_are_locked_down).
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
        assert labels["environment"] == OPTION_SETS[name].overlay


def test_the_example_cronjob_flags() -> None:
    assert not _kind(_render("dev-namespace-no-cron"), "CronJob")
    # Left out on purpose: no note suggesting --cron-graph.
    docs, notes = render(_options(image="ghcr.io/acme/agents:1.2.0", cron=False,
                                    config=SERVER_GRAPHS / "langgraph.json"))
    assert not _kind(docs, "CronJob") and [n for n in notes if "CronJob" in n] == []
    cron = pod_spec(_one(_render("prod-namespace-cron-input"), "CronJob", "treadle-batch"))
    args = cron["containers"][0]["args"]
    assert args[args.index("--input") + 1] == '{"text": "From the flag."}'


@pytest.mark.parametrize(("options", "warned"), [
    (_options(overlay="prod"), "registry.example.com/treadle-app:0.1.0"),
    (_options(overlay="dev"), "treadle-app:dev"),
    (_options(overlay="prod", post_migrate=True), "registry.example.com/treadle-app:0.1.0"),
    (_options(overlay="prod", image="registry.example.com/treadle-app:0.2.0"),
     "registry.example.com/treadle-app:0.2.0"),
    (_options(overlay="prod", image="ghcr.io/acme/agents:1.2.0"), None),
    (_options(overlay="dev", image=f"registry.local:5000/team/agents@{DIGEST}"), None),
])
def test_a_placeholder_image_is_warned_about(options: K8sOptions, warned: str | None) -> None:
    _docs, notes = render(options)
    warnings = [n for n in notes if n.startswith("warning: the image")]
    if warned is None:
        assert warnings == []
    else:
        assert warnings == [f"warning: the image {warned} is a placeholder, not an image of your "
                            "graphs: pass --image REGISTRY/NAME:TAG (or TREADLE_DEPLOY_IMAGE), "
                            "built with deploy/Dockerfile"]


NO_AUTH = ("warning: the API has no authentication and its Ingress is public: anyone who "
           "reaches it can run your graphs and read every thread (see docs/security.md)\n")
DB_NOTE = ("note: the pods may reach PostgreSQL (port 5432) only on pods labelled "
           "app.kubernetes.io/name=postgresql in their namespace: pass --database-address "
           "IP/CIDR (a managed database) or --database-selector LABELS [--database-namespace "
           "NS]\n")


def test_the_cli_flags_and_their_environment_twins(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_cli(["deploy", "k8s", "--overlay", "dev"]) == 0
    out, err = capsys.readouterr()
    assert err == ("warning: the image treadle-app:dev is a placeholder, not an image of your "
                   "graphs: pass --image REGISTRY/NAME:TAG (or TREADLE_DEPLOY_IMAGE), built with "
                   "deploy/Dockerfile\n" + NO_AUTH + DB_NOTE)  # lines on stderr; the YAML on stdout
    assert [d for d in yaml.safe_load_all(out) if d] == _render("dev")
    assert run_cli(["deploy", "k8s", "--overlay", "dev", "--namespace", "agents-dev",
                    "--create-namespace", "--no-cron"]) == 0
    assert [d for d in yaml.safe_load_all(capsys.readouterr().out) if d] == \
        _render("dev-namespace-no-cron")
    monkeypatch.setenv("TREADLE_DEPLOY_CREATE_NAMESPACE", "true")
    monkeypatch.setenv("TREADLE_DEPLOY_CRON_INPUT", '{"text": "From the flag."}')
    monkeypatch.setenv("TREADLE_DEPLOY_IMAGE", "ghcr.io/acme/agents:1.2.0")
    monkeypatch.setenv("TREADLE_DEPLOY_ALLOW_UNAUTHENTICATED", "true")
    assert run_cli(["deploy", "k8s", "--overlay", "prod"]) == 0
    out, err = capsys.readouterr()
    assert err == NO_AUTH + DB_NOTE
    expected = render(_options(overlay="prod", image="ghcr.io/acme/agents:1.2.0",
                                 create_namespace=True, cron_input='{"text": "From the flag."}'))
    assert [d for d in yaml.safe_load_all(out) if d] == expected[0]
    monkeypatch.setenv("TREADLE_DEPLOY_CRON", "false")
    monkeypatch.delenv("TREADLE_DEPLOY_CRON_INPUT")
    assert run_cli(["deploy", "k8s", "--overlay", "prod"]) == 0
    assert "CronJob" not in capsys.readouterr().out


@pytest.mark.parametrize("name", ["prod", "prod-custom"])
def test_keda_targets_are_what_one_worker_takes(name: str) -> None:
    docs = _render(name)
    settings = _one(docs, "ConfigMap", "treadle-env")["data"]
    scaled = _one(docs, "ScaledObject", "treadle-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "treadle-worker"
    triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
    assert set(triggers) == {"runs", "tasks", "cpu"}
    for trigger, setting in KEDA_TARGETS.items():
        assert triggers[trigger]["type"] == "postgresql"
        assert triggers[trigger]["metadata"]["targetQueryValue"] == settings[setting]
        assert triggers[trigger]["authenticationRef"]["name"] == "treadle-database"
    if name == "prod-custom":
        assert triggers["runs"]["metadata"]["targetQueryValue"] == "16"


def test_keda_targets_in_the_yaml_itself_match_the_configmap() -> None:
    # kubectl kustomize users get the YAML as written: it must be consistent on its own.
    docs = kustomize.build(K8S / "overlays" / "prod")
    settings = _one(docs, "ConfigMap", "treadle-env")["data"]
    triggers = {t["name"]: t for t in _one(docs, "ScaledObject", "treadle-worker")["spec"]["triggers"]}
    for trigger, setting in KEDA_TARGETS.items():
        assert triggers[trigger]["metadata"]["targetQueryValue"] == settings[setting]


def test_no_task_slots_drops_the_tasks_trigger() -> None:
    from treadle.deploy import manifests

    docs = kustomize.build(K8S / "overlays" / "prod")
    _one(docs, "ConfigMap", "treadle-env")["data"]["TREADLE_WORKER_TASK_SLOTS"] = "0"
    manifests._tie_keda_target(docs)  # KEDA refuses a target of 0
    triggers = _one(docs, "ScaledObject", "treadle-worker")["spec"]["triggers"]
    assert [t["name"] for t in triggers] == ["runs", "cpu"]


def test_network_policies() -> None:
    docs = _render("prod")
    policies = {p["metadata"]["name"]: p["spec"] for p in _kind(docs, "NetworkPolicy")}
    default = policies["treadle-default"]
    assert default["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "treadle"}
    assert default["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in default
    egress_ports = {p["port"] for rule in default["egress"] for p in rule["ports"]}
    assert {53, 4317, 4318} <= egress_ports
    # PostgreSQL's port is reachable only at the database, never everywhere.
    for spec in policies.values():
        for rule in spec.get("egress", []):
            if 5432 in {p["port"] for p in rule["ports"]}:
                assert rule.get("to"), "egress to 5432 with no destination: everywhere"
    database = policies["treadle-database-egress"]
    assert database["egress"] == [{
        "to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "postgresql"}}}],
        "ports": [{"protocol": "TCP", "port": 5432}]}]
    api = policies["treadle-api-ingress"]
    assert [p["port"] for p in api["ingress"][0]["ports"]] == [2024]
    worker = policies["treadle-worker-ingress"]
    assert [p["port"] for p in worker["ingress"][0]["ports"]] == [8081]  # metrics only


def _database_peers(**given: Any) -> list[dict[str, Any]]:
    docs, notes = render(_options(**given))
    assert not [n for n in notes if "PostgreSQL" in n]
    [policy] = [p for p in _kind(docs, "NetworkPolicy")
                if p["metadata"]["name"] == "treadle-database-egress"]
    assert [p["port"] for p in policy["spec"]["egress"][0]["ports"]] == [5432]
    peers: list[dict[str, Any]] = policy["spec"]["egress"][0]["to"]
    return peers


def test_egress_to_the_database_names_it() -> None:
    assert _database_peers(database_address="10.20.0.5") == [
        {"ipBlock": {"cidr": "10.20.0.5/32"}}]
    assert _database_peers(database_address="10.20.0.0/24") == [
        {"ipBlock": {"cidr": "10.20.0.0/24"}}]
    assert _database_peers(database_address="postgresql://u:pw@[fd00::5]:5432/db") == [
        {"ipBlock": {"cidr": "fd00::5/128"}}]
    assert _database_peers(database_selector="app=pg,tier=db", database_namespace="data") == [
        {"podSelector": {"matchLabels": {"app": "pg", "tier": "db"}},
         "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}}}]


@pytest.mark.parametrize(("given", "message"), [
    ({"database_address": "db.internal"}, "--database-address: 'db.internal' is not an IP "
     "address or CIDR (a NetworkPolicy cannot name a host): pass the database's IP address, "
     "or --database-selector for database pods"),
    ({"database_address": "postgresql://u:hunter2@db.internal/db"},
     "--database-address: the store URL's host is not an IP address"),
    ({"database_selector": "app"}, "bad --database-selector 'app': labels as key=value"),
    ({"database_namespace": "data"}, "--database-namespace names where the "
     "--database-selector pods run: pass --database-selector too"),
    ({"auth": "custom"}, "unknown --auth 'custom': use builtin"),
])
def test_bad_database_and_auth_flags_are_one_line(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        render(_options(**given))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert "hunter2" not in str(err.value)


def test_the_prod_overlay_refuses_a_public_api_without_auth(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        render(K8sOptions(overlay="prod"))
    assert str(err.value).startswith("the prod overlay's Ingress would make an API without "
                                     "authentication public: configure auth")
    docs, notes = render(K8sOptions(overlay="prod", auth="builtin"))
    assert _one(docs, "ConfigMap", "treadle-env")["data"]["TREADLE_AUTH"] == "builtin"
    assert not [n for n in notes if "authentication" in n]
    docs, notes = render(K8sOptions(overlay="prod", allow_unauthenticated=True))
    assert NO_AUTH.strip() in notes and "TREADLE_AUTH" not in \
        _one(docs, "ConfigMap", "treadle-env")["data"]
    docs, notes = render(K8sOptions(overlay="dev"))  # dev: a warning, not a refusal
    assert NO_AUTH.strip() in notes
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({**json.loads((EXAMPLES / "langgraph.json").read_text()),
                                  "auth": {"path": "./auth.py:auth"}}))
    docs, notes = render(K8sOptions(overlay="prod", config=config))  # custom auth: accepted
    assert not [n for n in notes if "authentication" in n]
    assert "TREADLE_AUTH" not in _one(docs, "ConfigMap", "treadle-env")["data"]


def test_the_ingress_routes_the_api_but_not_metrics() -> None:
    for name in ("dev", "prod"):
        [ingress] = _kind(_render(name), "Ingress")
        paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
        assert "/" not in paths and "/metrics" not in paths
        assert not [p for p in paths if "/metrics".startswith(p.rstrip("/") + "/")]
        assert {"/assistants", "/threads", "/runs", "/store", "/info", "/ok", "/console",
                "/operations"} <= set(paths)
        assert all(p["backend"]["service"]["name"] == "treadle-api"
                   for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"])
        # Prometheus scrapes the pods in-cluster: the API declares where.
        api = _one(_render(name), "Deployment", "treadle-api")
        assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == \
            "/metrics"


# --- parameters -----------------------------------------------------------------------------


def test_parameters_change_what_they_name() -> None:
    docs = _render("prod-custom")
    for _doc, container in _containers(docs):
        assert container["image"] == "ghcr.io/acme/agents:1.2.0"
    for doc in docs:
        assert doc["metadata"]["namespace"] == "agents"
    assert _one(docs, "HorizontalPodAutoscaler", "treadle-api")["spec"]["minReplicas"] == 4
    scaled = _one(docs, "ScaledObject", "treadle-worker")["spec"]
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (3, 20)
    for name in ("treadle-api", "treadle-worker"):  # the autoscalers own the counts
        assert "replicas" not in _one(docs, "Deployment", name)["spec"]
    assert _one(docs, "ConfigMap", "treadle-env")["data"]["TREADLE_WORKER_CONCURRENCY"] == "16"
    served = _one(docs, "ConfigMap", "treadle-graphs")["data"]["langgraph.json"]
    assert served == (SERVER_GRAPHS / "langgraph.json").read_text()
    cron = pod_spec(_one(docs, "CronJob", "treadle-batch"))["containers"][0]
    assert cron["args"][:2] == ["run", "/app/graphs.py:chain"]
    # A Job's template is immutable: each image gets its own Job name.
    job = _one(docs, "Job", "treadle-migrate-pre")["metadata"]["name"]
    assert job.startswith("treadle-migrate-pre-") and job != _one(
        render(_options(overlay="prod", image="ghcr.io/acme/agents:1.2.1"))[0], "Job",
        "treadle-migrate-pre")["metadata"]["name"]


def test_dev_replicas_and_digest_images() -> None:
    docs = _render("dev-custom")
    assert _one(docs, "Deployment", "treadle-api")["spec"]["replicas"] == 2
    assert _one(docs, "Deployment", "treadle-worker")["spec"]["replicas"] == 5
    for _doc, container in _containers(docs):
        assert container["image"] == f"registry.local:5000/team/agents@{DIGEST}"
    assert not _kind(docs, "HorizontalPodAutoscaler") and not _kind(docs, "ScaledObject")


def test_defaults_follow_the_overlays() -> None:
    dev, prod = _render("dev"), _render("prod")
    assert {d["metadata"]["namespace"] for d in dev} == {"treadle-dev"}
    assert {d["metadata"]["namespace"] for d in prod} == {"treadle"}
    assert _one(dev, "ConfigMap", "treadle-env")["data"]["TREADLE_LOG_FORMAT"] == "console"
    assert _one(prod, "ConfigMap", "treadle-env")["data"]["TREADLE_LOG_FORMAT"] == "json"
    assert _one(dev, "Deployment", "treadle-api")["spec"]["replicas"] == 1
    assert _one(dev, "CronJob", "treadle-batch")["spec"]["suspend"] is True
    assert {c["image"] for _d, c in _containers(dev)} == {"treadle-app:dev"}
    assert {c["image"] for _d, c in _containers(prod)} == {"registry.example.com/treadle-app:0.1.0"}


def test_a_config_without_the_cron_graph_leaves_the_cronjob_out() -> None:
    image = "ghcr.io/acme/agents:1.2.0"
    docs, notes = render(_options(overlay="prod", image=image,
                                    config=SERVER_GRAPHS / "langgraph.json"))
    assert not _kind(docs, "CronJob")
    [cron_note] = [n for n in notes if "CronJob" in n]
    assert cron_note.startswith("note: ") and "--cron-graph" in cron_note
    docs, notes = render(_options(overlay="prod", image=image, config=EXAMPLES / "langgraph.json"))
    assert _kind(docs, "CronJob") and [n for n in notes if "CronJob" in n] == []


def test_the_default_config_is_the_example_the_image_builds() -> None:
    for name in ("dev", "prod"):
        served = _one(_render(name), "ConfigMap", "treadle-graphs")["data"]["langgraph.json"]
        assert served == (EXAMPLES / "langgraph.json").read_text()
    cron = pod_spec(_one(_render("prod"), "CronJob", "treadle-batch"))["containers"][0]
    ref = cron["args"][1]
    assert ref == "/app/pipeline.py:builder" and (EXAMPLES / "pipeline.py").is_file()


@pytest.mark.parametrize(("options", "message"), [
    (_options(overlay="staging"), "unknown overlay 'staging': use dev or prod"),
    (_options(image="Not An Image"), "bad image reference"),
    (_options(image="ghcr.io/acme/agents:"), "bad image reference"),
    (_options(image="agents@sha256:short"), "bad image reference"),
    (_options(namespace="Agents_1"), "bad --namespace"),
    (_options(database_secret="a" * 64), "bad --database-secret"),
    (_options(database_key="a/b"), "bad --database-secret-key"),
    (_options(api_replicas=0), "--api-replicas must be at least 1"),
    (_options(config=Path("/nonexistent/langgraph.json")), "not found"),
    (_options(cron_graph="nope"), "--cron-graph 'nope' is not a graph"),
    (_options(post_migrate=True, config=EXAMPLES / "langgraph.json"), "takes no --config"),
    (_options(post_migrate=True, cron=False), "takes no --config, --cron-graph, --cron-input"),
    (_options(cron=False, cron_input="{}"), "--no-cron leaves the example CronJob out"),
    (_options(cron=False, cron_graph="pipeline"), "--no-cron leaves the example CronJob out"),
    (_options(cron_input="{not json"), "--cron-input is not valid JSON"),
])
def test_bad_input_is_one_clear_error(options: K8sOptions, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("*", r"\*")):
        render(options)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "not valid JSON"),
    ('{"graphs": {}}', 'has no "graphs"'),
    ('{"graphs": {"a": 1}}', "must be a string"),
])
def test_bad_config_files(tmp_path: Path, content: str, message: str) -> None:
    config = tmp_path / "langgraph.json"
    config.write_text(content)
    with pytest.raises(ConfigError, match=message):
        render(_options(config=config))


def test_the_cli_prints_yaml_or_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["deploy", "k8s", "--overlay", "dev"]) == 0
    out = capsys.readouterr().out
    assert [d for d in yaml.safe_load_all(out) if d] == _render("dev")
    assert run_cli(["deploy", "k8s", "--image", "UPPER:case", "--overlay", "dev"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: bad image reference 'UPPER:case'") and err.count("\n") == 1


def test_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "manifests"
    assert run_cli(["deploy", "k8s", "--overlay", "prod", "--allow-unauthenticated",
                    "--output", str(out)]) == 0
    files = sorted(p.name for p in out.glob("*.yaml"))
    assert len(files) == len(_render("prod")) and files[0] == "01-serviceaccount-treadle.yaml"
    parsed = [yaml.safe_load(p.read_text()) for p in sorted(out.glob("*.yaml"))]
    assert parsed == _render("prod")
    # Written again (fewer resources): the old files go, nothing else is touched.
    (out / "notes.txt").write_text("mine")
    write(_render("dev"), out)
    assert len(list(out.glob("*.yaml"))) == len(_render("dev")) and (out / "notes.txt").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.yaml").write_text("{}")
    assert run_cli(["deploy", "k8s", "--allow-unauthenticated", "--output", str(other)]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert (other / "x.yaml").read_text() == "{}"


def test_dump_keeps_multi_line_strings_readable() -> None:
    text = dump(_render("prod"))
    assert "langgraph.json: |" in text
    assert [d for d in yaml.safe_load_all(text) if d] == _render("prod")


# --- the kustomize subset -------------------------------------------------------------------


def _overlay(tmp_path: Path, kustomization: dict[str, Any], files: dict[str, Any]) -> Path:
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, docs in files.items():
        (tmp_path / name).write_text(yaml.safe_dump_all(docs))
    return tmp_path


DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
    "spec": {"replicas": 2, "template": {"spec": {"containers": [
        {"name": "a", "image": "treadle", "args": ["x"],
         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "b", "image": "other:1"},
    ]}}},
}


def test_strategic_merge(tmp_path: Path) -> None:
    patch = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
             "spec": {"replicas": None, "template": {"spec": {"containers": [
                 {"name": "a", "args": ["y", "z"], "env": [{"name": "B", "value": "3"},
                                                           {"name": "C", "value": "4"}]},
                 {"name": "c", "image": "new"},
             ]}}}}
    docs = kustomize.build(_overlay(tmp_path, {
        "resources": ["d.yaml"], "patches": [{"path": "p.yaml"}],
        "images": [{"name": "treadle", "newName": "reg/app", "newTag": "7"}],
        "namespace": "ns", "labels": [{"pairs": {"team": "x"}}],
    }, {"d.yaml": [DEPLOYMENT], "p.yaml": [patch]}))
    spec = docs[0]["spec"]
    assert "replicas" not in spec  # null removes
    containers = spec["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["a", "b", "c"]  # merged by name, new appended
    assert containers[0]["args"] == ["y", "z"]  # plain lists are replaced
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "3"},
                                    {"name": "C", "value": "4"}]
    assert [c["image"] for c in containers] == ["reg/app:7", "other:1", "new"]
    assert docs[0]["metadata"] == {"name": "d", "namespace": "ns", "labels": {"team": "x"}}


@pytest.mark.parametrize(("kustomization", "files", "message"), [
    ({"resources": ["d.yaml"], "configMapGenerator": []}, {}, "configMapGenerator not supported"),
    ({"resources": ["d.yaml"], "patches": [{"path": "p.yaml", "target": {"kind": "Deployment"}}]},
     {"p.yaml": [DEPLOYMENT]}, "only `- path: file.yaml` patches"),
    ({"resources": ["d.yaml"], "patches": [{"path": "p.yaml"}]},
     {"p.yaml": [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "d"}}]},
     "built-in kinds only"),
    ({"resources": ["d.yaml"], "patches": [{"path": "p.yaml"}]},
     {"p.yaml": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "e"}}]},
     "matches 0 resources"),
    ({"resources": ["d.yaml"], "patches": [{"path": "p.yaml"}]},
     {"p.yaml": [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"$patch": "replace"}}]}, r"\$patch is not supported"),
    ({"resources": ["d.yaml"], "labels": [{"pairs": {"a": "b"}, "includeSelectors": True}]}, {},
     "labels support only"),
    ({"resources": ["missing.yaml"]}, {}, "does not exist"),
])
def test_the_subset_refuses_what_it_does_not_render(
    tmp_path: Path, kustomization: dict[str, Any], files: dict[str, Any], message: str
) -> None:
    overlay = _overlay(tmp_path, kustomization, {"d.yaml": [DEPLOYMENT], **files})
    with pytest.raises(ConfigError, match=message):
        kustomize.build(overlay)


def test_the_shipped_kustomizations_stay_in_the_subset() -> None:
    for path in K8S.rglob("kustomization.yaml"):
        kustomize.load_kustomization(path.parent)  # raises on anything else


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_repository_path_is_the_packaged_tree() -> None:
    # deploy/k8s is the package's tree (a symlink), and the treadle under test (installed
    # or this checkout) ships the same files.
    assert (REPO / "deploy" / "k8s").resolve() == (REPO / "src" / "treadle" / "deploy" / "k8s").resolve()
    assert _tree(REPO / "deploy" / "k8s") == _tree(K8S)


# --- the image ------------------------------------------------------------------------------


def _stages() -> list[list[dict[str, Any]]]:
    from dockerfile_parse import DockerfileParser

    stages: list[list[dict[str, Any]]] = []
    for instruction in DockerfileParser(str(DOCKERFILE)).structure:
        if instruction["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def _dockerfile_user() -> str:
    users = [i["value"] for i in _stages()[-1] if i["instruction"] == "USER"]
    assert len(users) == 1
    return str(users[0])


def test_dockerfile_builds_in_two_stages_and_runs_unprivileged() -> None:
    stages = _stages()
    assert len(stages) == 2
    assert stages[0][0]["value"] == "${PYTHON_IMAGE} AS builder"
    assert stages[1][0]["value"] == "${PYTHON_IMAGE} AS runtime"
    text = DOCKERFILE.read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    user, group = _dockerfile_user().split(":")
    assert user.isdigit() and int(user) >= 1000 and group.isdigit()
    runtime = " ".join(i["value"] for i in stages[1])
    assert "--from=builder /opt/venv /opt/venv" in runtime and "--from=builder /app /app" in runtime
    builder = [i["value"] for i in stages[0] if i["instruction"] == "RUN"]
    assert any("python -m treadle.deploy.dependencies" in r and "/langgraph.json" in r
               for r in builder)
    args = {i["value"].split("=")[0] for i in stages[0] if i["instruction"] == "ARG"}
    assert {"GRAPHS_DIR", "TREADLE_SPEC"} <= args


def test_dockerfile_pulls_nothing_but_its_base_and_keeps_data_in_a_volume() -> None:
    text = DOCKERFILE.read_text()
    # A parser directive (# syntax=...) makes BuildKit pull a frontend image from a registry.
    directives = [line for line in text.splitlines()
                  if re.match(r"#\s*syntax\s*=", line, flags=re.IGNORECASE)]
    assert not directives
    runtime = _stages()[-1]
    env = " ".join(i["value"] for i in runtime if i["instruction"] == "ENV")
    assert "TREADLE_STORE=sqlite:////data/treadle.db" in env  # the default store is in /data
    volumes = [i["value"] for i in runtime if i["instruction"] == "VOLUME"]
    assert volumes == ["/data"]
    made = [i["value"] for i in runtime if i["instruction"] == "RUN" and "/data" in i["value"]]
    user = _dockerfile_user()
    assert len(made) == 1 and f"chown {user} /data" in made[0]  # the user may write there
    # VOLUME after the chown: a new volume starts with the image's owner of /data.
    order = [i["instruction"] for i in runtime]
    assert order.index("VOLUME") > runtime.index(next(
        i for i in runtime if i["instruction"] == "RUN" and "/data" in i["value"]))


def test_the_runtime_virtualenv_has_no_installers() -> None:
    builder, runtime = _stages()
    runs = [i["value"] for i in builder if i["instruction"] == "RUN"]
    # After the last install step, pip (and unused setuptools / wheel) are removed ...
    last_install = max(n for n, r in enumerate(runs) if "treadle.deploy.dependencies" in r
                       or "pip install" in r)
    cleanup = [r for r in runs[last_install + 1:] if "pip uninstall" in r]
    assert len(cleanup) == 1 and "uninstall -y -q pip" in cleanup[0]
    assert "setuptools" in cleanup[0] and "wheel" in cleanup[0]
    # ... from the virtualenv the runtime copies (tests/e2e/test_deploy_k8s.py runs the step).
    copied = [i["value"] for i in runtime if i["instruction"] == "COPY" and "/opt/venv" in i["value"]]
    assert copied == ["--from=builder /opt/venv /opt/venv"]
    assert not [i for i in runtime if i["instruction"] == "RUN" and "pip" in i["value"]]


def test_manifests_run_the_image_entrypoint_with_treadle_commands() -> None:
    import typer

    from treadle.cli import app

    commands = set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    entrypoint, cmd, workdir = image_config()
    assert entrypoint == ["treadle"] and cmd[0] in commands and workdir == "/app"
    for name in OPTION_SETS:
        for doc, container in _containers(_render(name)):
            assert "command" not in container, doc["metadata"]["name"]  # the ENTRYPOINT runs
            assert container["args"][0] in commands
    api = pod_spec(_one(_render("prod"), "Deployment", "treadle-api"))["containers"][0]
    assert api["args"] == ["serve", "--no-workers", "--config", "/app/langgraph.json"]
    worker = pod_spec(_one(_render("prod"), "Deployment", "treadle-worker"))["containers"][0]
    assert worker["args"] == ["worker", "--config", "/app/langgraph.json", "--port", "8081"]


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", "**/__pycache__", ".venv"} <= set(ignored)
    assert "tests" not in ignored and "examples" not in ignored  # GRAPHS_DIR may point there


# --- the image's install step ---------------------------------------------------------------


def test_pip_arguments_of_langgraph_json(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "pyproject.toml").write_text("[project]\nname = 'pkg'\n")
    (tmp_path / "langgraph.json").write_text(json.dumps({
        "dependencies": [".", "./lib", "./pkg", "langchain-openai>=0.3"], "graphs": {}}))
    assert pip_arguments(tmp_path / "langgraph.json") == [
        str((tmp_path / "pkg").resolve()), "langchain-openai>=0.3"]
    assert pip_arguments(EXAMPLES / "langgraph.json") == []


@pytest.mark.parametrize(("deps", "message"), [
    (["./missing"], "does not exist"),
    (["../outside"], "outside the graphs' directory"),
    ("langchain", "must be a list of strings"),
])
def test_pip_arguments_errors(tmp_path: Path, deps: Any, message: str) -> None:
    (tmp_path / "outside").mkdir()
    graphs = tmp_path / "graphs"
    graphs.mkdir()
    (graphs / "langgraph.json").write_text(json.dumps({"dependencies": deps, "graphs": {}}))
    with pytest.raises(ConfigError, match=message):
        pip_arguments(graphs / "langgraph.json")
