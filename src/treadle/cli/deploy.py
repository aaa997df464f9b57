"""``treadle deploy k8s``: Kubernetes manifests for an image of your graphs, no kubectl needed."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from treadle.cli._app import app
from treadle.cli._output import _stderr

deploy_app = typer.Typer(
    name="deploy", help="Deployment manifests.", no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("k8s", short_help="Render the Kubernetes manifests.")
def k8s(
    image: str | None = typer.Option(
        None, "--image", envvar="TREADLE_DEPLOY_IMAGE",
        help="The image of your graphs (built with deploy/Dockerfile), e.g. "
        "ghcr.io/acme/agents:1.2.0.",
    ),
    overlay: str = typer.Option(
        "prod", "--overlay", envvar="TREADLE_DEPLOY_OVERLAY",
        help="dev (one pod each, console logs) or prod (autoscaled: HPA and KEDA, PDBs).",
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", envvar="TREADLE_DEPLOY_NAMESPACE",
        help="Namespace of every resource (default: the overlay's, treadle or treadle-dev).",
    ),
    api_replicas: int | None = typer.Option(
        None, "--api-replicas", envvar="TREADLE_DEPLOY_API_REPLICAS",
        help="API pods (prod: the HPA's minimum).",
    ),
    worker_replicas: int | None = typer.Option(
        None, "--worker-replicas", envvar="TREADLE_DEPLOY_WORKER_REPLICAS",
        help="Worker pods (prod: KEDA's minimum).",
    ),
    worker_concurrency: int | None = typer.Option(
        None, "--worker-concurrency", envvar="TREADLE_DEPLOY_WORKER_CONCURRENCY",
        help="Runs each worker pod executes at once (TREADLE_WORKER_CONCURRENCY; also KEDA's "
        "target runs per pod).",
    ),
    database_secret: str | None = typer.Option(
        None, "--database-secret", envvar="TREADLE_DEPLOY_DATABASE_SECRET",
        help="Secret holding the PostgreSQL URL (default: treadle-database).",
    ),
    database_key: str | None = typer.Option(
        None, "--database-secret-key", envvar="TREADLE_DEPLOY_DATABASE_SECRET_KEY",
        help="Key of that Secret (default: url).",
    ),
    config: str | None = typer.Option(
        None, "--config", "-c", envvar="TREADLE_DEPLOY_CONFIG",
        help="The langgraph.json to serve (put in the treadle-graphs ConfigMap); the image must "
        "hold its graphs under /app.",
    ),
    cron_graph: str | None = typer.Option(
        None, "--cron-graph", envvar="TREADLE_DEPLOY_CRON_GRAPH",
        help="Graph (a name in langgraph.json) the example batch CronJob runs.",
    ),
    cron: bool = typer.Option(
        True, "--cron/--no-cron", envvar="TREADLE_DEPLOY_CRON",
        help="Render the example batch CronJob (--no-cron: leave it out).",
    ),
    cron_input: str | None = typer.Option(
        None, "--cron-input", envvar="TREADLE_DEPLOY_CRON_INPUT",
        help="The input (JSON) of the example CronJob's run.",
    ),
    auth: str | None = typer.Option(
        None, "--auth", envvar="TREADLE_DEPLOY_AUTH",
        help="builtin: the pods authenticate with treadle's API keys and JWTs "
        "(TREADLE_AUTH=builtin); none. Custom auth is langgraph.json's \"auth\" (--config).",
    ),
    allow_unauthenticated: bool = typer.Option(
        False, "--allow-unauthenticated", envvar="TREADLE_DEPLOY_ALLOW_UNAUTHENTICATED",
        help="Render the prod overlay's public Ingress although the API has no auth "
        "(something in front of it authenticates every request).",
    ),
    database_address: str | None = typer.Option(
        None, "--database-address", envvar="TREADLE_DEPLOY_DATABASE_ADDRESS",
        help="The database's IP address or CIDR (or a store URL whose host is an IP): the "
        "only egress allowed to port 5432.",
    ),
    database_selector: str | None = typer.Option(
        None, "--database-selector", envvar="TREADLE_DEPLOY_DATABASE_SELECTOR",
        help="Labels of the database's pods (k=v[,k=v]; default "
        "app.kubernetes.io/name=postgresql): the only egress allowed to port 5432.",
    ),
    database_namespace: str | None = typer.Option(
        None, "--database-namespace", envvar="TREADLE_DEPLOY_DATABASE_NAMESPACE",
        help="Namespace of the --database-selector pods (default: treadle's own).",
    ),
    create_namespace: bool = typer.Option(
        False, "--create-namespace", envvar="TREADLE_DEPLOY_CREATE_NAMESPACE",
        help="Also render the Namespace (labelled for the restricted Pod Security Standard).",
    ),
    post_migrate: bool = typer.Option(
        False, "--post-migrate", envvar="TREADLE_DEPLOY_POST_MIGRATE",
        help="Render only the post-migration Job, to apply once the rollout is complete.",
    ),
    output: str | None = typer.Option(
        None, "--output", "-o", envvar="TREADLE_DEPLOY_OUTPUT",
        help="Write one file per resource into this directory (default: the YAML on stdout).",
    ),
) -> None:
    """Render the Kubernetes manifests: API, workers, migrations, autoscaling, policies.

    Apply them all at once: the API, worker and batch pods wait (init container) until the pre-migration Job has run. After the rollout, apply the post-migration Job (--post-migrate). Expects the Secret treadle-database (key url: the PostgreSQL URL) and optionally treadle-graph-env (model provider keys, TREADLE_WEBHOOK_SECRET). The prod overlay needs auth (langgraph.json "auth" or --auth builtin) or --allow-unauthenticated; its Ingress routes the API only, never /metrics.
    """
    from treadle.deploy.manifests import K8sOptions, dump, render, write

    docs, notes = render(K8sOptions(
        overlay=overlay, image=image, namespace=namespace, api_replicas=api_replicas,
        worker_replicas=worker_replicas, worker_concurrency=worker_concurrency,
        database_secret=database_secret, database_key=database_key,
        config=Path(config) if config is not None else None,
        cron_graph=cron_graph, cron=cron, cron_input=cron_input,
        create_namespace=create_namespace, post_migrate=post_migrate, auth=auth,
        allow_unauthenticated=allow_unauthenticated, database_address=database_address,
        database_selector=database_selector, database_namespace=database_namespace,
    ))
    err = _stderr()
    for note in notes:
        err.print(note, highlight=False, markup=False)
    if output is None:
        sys.stdout.write(dump(docs))
        return
    written = write(docs, Path(output))
    err.print(f"wrote {len(written)} manifests to {output}", highlight=False)
