"""The ASGI app: LangGraph Platform's HTTP API over treadle's store and run queue.

``create_app`` builds it; the lifespan opens the store, loads the graphs of
``langgraph.json``, creates each graph's default assistant and starts the
background loops (the in-process worker of ``treadle dev``, the cron scheduler,
the purge of old stream events, the thread TTL sweep), then langgraph.json's ``http.app``'s
(:mod:`treadle.server.custom_app`). Any number of replicas may share one store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import Scope

from treadle.config import Settings
from treadle.errors import (
    AccessFilterError,
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    RefusedConfigError,
    StoreUnavailableError,
    TreadleError,
)
from treadle.langgraph_json import Loaded
from treadle.redaction import redact
from treadle.server.context import Ctx
from treadle.server.limits import BodyLimit, valid_request
from treadle.server.served_graphs import ServerGraphs
from treadle.store import serde_policy

__all__ = ["create_app", "http_status"]

log = logging.getLogger("treadle.server")


def create_app(settings: Settings, refs: dict[str, str], *, in_process_worker: bool = False,
               langgraph: Loaded | None = None,
               allowed_hosts: Sequence[str] | None = None) -> FastAPI:
    """The server app for graphs ``refs`` (name -> REF, as in langgraph.json); the rest of
    the ``langgraph`` file it was read from (descriptions, CORS, webhooks, the ``http``
    section: ``http.app``, ``disable_*``, ``configurable_headers``, ``mount_prefix``)
    applies too. ``allowed_hosts``: the Host names answered (None: any)."""
    langgraph = langgraph or Loaded(refs)
    serde_policy.configure(langgraph.serde)  # before any graph or serializer is built
    from treadle.server.ttl_sweep import retention_of, run_sweeps

    retention = retention_of(settings, langgraph.thread_ttl)  # a bad TTL stops here
    from treadle.graphs.store_index import load_index

    memory_index = load_index(langgraph.store_index, langgraph.source, encrypted=bool(
        settings.encryption or settings.encryption_keys or langgraph.encryption))
    from treadle.server.webhook_policy import WebhookPolicy

    http = langgraph.http
    webhooks = WebhookPolicy.from_config(langgraph.webhooks, langgraph.source,
                                         disabled=http.disable_webhooks)
    priorities = None
    if langgraph.priority is not None:  # a bad reference stops here, before listening
        from treadle.server.priority import ThreadPriorities, load_priority

        priorities = ThreadPriorities(load_priority(langgraph.priority))
    user_app = None
    if http.app is not None:  # langgraph.json's http.app (treadle.server.custom_app)
        from treadle.server.custom_app import load_custom_app

        user_app = load_custom_app(http.app, langgraph.source)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        from concurrent.futures import ThreadPoolExecutor

        from treadle.store import shared

        # Store calls run in threads: size the pool for many concurrent requests.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(settings.store_threads, thread_name_prefix="treadle-server"))
        store = await asyncio.to_thread(shared.acquire, settings.store, settings)
        store.default_thread_ttl = retention.default  # threads made without a ttl get it
        store.item_index = memory_index  # langgraph.json store.index, for every TreadleStore
        if memory_index is not None:
            log.info("store.index: %d dims, fields %s; ranking: %s", memory_index.dims,
                     list(memory_index.fields), await asyncio.to_thread(store.vector_ranking))
        if getattr(app.state, "build_auth", None) is not None:  # built-in auth needs the store
            _use_auth(app, app.state.build_auth(settings, store), "built-in auth")
        graphs = ServerGraphs(store, refs, settings, descriptions=langgraph.descriptions,
                              memory_ttl=langgraph.store_ttl)
        await asyncio.to_thread(graphs.load)
        await asyncio.to_thread(graphs.ensure_default_assistants)
        ctx = Ctx(settings=settings, store=store, graphs=graphs, memory_ttl=langgraph.store_ttl,
                  webhooks=webhooks, priority=priorities)
        app.state.ctx = ctx
        from treadle import metrics

        metrics.watch_queue(store)  # /metrics reads the queue gauges from this store
        loops = [asyncio.create_task(_purge_events(ctx)),
                 asyncio.create_task(run_sweeps(ctx, retention))]
        try:
            from treadle.server.scheduler import run_scheduler

            loops.append(asyncio.create_task(run_scheduler(ctx)))
        except ImportError:  # pragma: no cover
            pass
        worker = None
        if in_process_worker:
            from treadle.cluster.worker import Worker
            from treadle.server.run_hooks import api_hooks

            worker = Worker(settings, refs, registry=graphs.registry,  # graphs loaded once
                            hooks=api_hooks(webhooks))
            await asyncio.to_thread(worker.connect)
            await asyncio.to_thread(worker.load)
            worker_task = asyncio.create_task(worker.run(handle_signals=False))
        try:
            if user_app is None:
                yield
            else:  # http.app's lifespan: inside treadle's; its state is request.state
                from treadle.server.custom_app import user_lifespan

                async with user_lifespan(user_app)() as state:
                    yield state
        finally:
            ctx.extra["draining"] = True
            if worker is not None:
                worker.request_stop()
                with contextlib.suppress(Exception):
                    await worker_task
                worker.close()
            for t in loops:
                t.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            metrics.unwatch_queue(store)
            graphs.close()
            shared.release(settings.store)

    app = FastAPI(title="treadle", version=_version(), lifespan=lifespan,
                  dependencies=[Depends(valid_request)],
                  summary="LangGraph Platform's HTTP API, served by treadle",
                  **_meta_urls(meta="meta" not in http.disabled))
    from treadle.server.routes import assistants, meta, runs, threads

    routers = [meta.router, assistants.router, threads.router, runs.router]
    for optional in ("store", "crons", "thread_stream", "audit", "thread_storage", "operations"):
        try:
            module = __import__(f"treadle.server.routes.{optional}", fromlist=["router"])
        except ImportError:
            continue
        routers.append(module.router)
    from treadle.server.custom_app import UNSHADOWABLE, CustomRoutes
    from treadle.server.route_groups import prune

    routes = [route for router in routers for route in router.routes]
    prune(routes, http.disabled)  # langgraph.json's http.disable_*
    first = [r for r in routes if getattr(r, "path", None) in UNSHADOWABLE]
    app.include_router(_router_of(first))
    custom = None
    if user_app is not None:  # http.app's routes: after the probes, before the rest
        custom = CustomRoutes(user_app)
        app.router.routes.append(custom)
    app.include_router(_router_of([r for r in routes if r not in first]))
    _error_handlers(app)
    app.state.configurable_headers = http.headers  # read by get_authz (authz_deps)
    if settings.encryption:  # added first, so inside authentication: it sees the user
        from treadle.server.encryption_context import EncryptionScope
        from treadle.store.encryption import load_encryption

        encryption = load_encryption(settings.encryption)
        app.add_middleware(EncryptionScope, encryption_of=lambda: encryption)
    if user_app is not None and http.middleware_order == "auth_first":
        _add_user_middleware(app, user_app)  # added before authentication: inside it
    skip = None
    if custom is not None and not http.custom_route_auth:
        from treadle.server.custom_app import routed

        routes = app.router.routes
        skip = lambda scope: routed(routes, scope) is custom  # noqa: E731
    _install_auth(app, settings, langgraph, dev=in_process_worker, skip=skip)
    from treadle.server.host_check import HostCheck
    from treadle.server.origin_check import OriginCheck

    cors = langgraph.cors or {}
    app.add_middleware(OriginCheck, allow_origins=cors.get("allow_origins") or (),
                       allow_origin_regex=cors.get("allow_origin_regex"))
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=allowed_hosts)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    from treadle.server.trace_context import TraceContext

    app.add_middleware(TraceContext)
    # The assistants as MCP tools and A2A agents, unless langgraph.json's http.disable_mcp /
    # http.disable_a2a (routes are matched at request time: their place here is free).
    for protocol, disabled in (("mcp", langgraph.disable_mcp), ("a2a", langgraph.disable_a2a)):
        if not disabled:
            app.include_router(__import__(f"treadle.server.{protocol}", fromlist=["router"]).router)
    if settings.console:  # the web console's page and files (public: they hold no data)
        from treadle.console import check_console_path, console_routes

        # nor may it cover http.app's routes: they would be reached without credentials
        check_console_path(settings.console_path,
                           [*app.router.routes, *getattr(user_app, "routes", ())])
        app.router.routes.extend(console_routes(settings.console_path))
    from treadle.server.audit_trail import AuditTrail

    # Outside authentication (added before it, it would be inside): refused calls are
    # recorded too. Inside CORS.
    app.add_middleware(AuditTrail)
    if langgraph.cors is not None:  # outermost: every answer carries the headers
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, **langgraph.cors)
    if user_app is not None and http.middleware_order == "middleware_first":
        _add_user_middleware(app, user_app)  # outermost: before authentication, CORS...
    if http.mount_prefix:
        from treadle.server.mount_prefix import MountPrefix

        app.add_middleware(MountPrefix, prefix=http.mount_prefix)
    return app


def _router_of(routes: list[Any]) -> APIRouter:
    router = APIRouter()
    router.routes.extend(routes)
    return router


def _meta_urls(*, meta: bool) -> dict[str, Any]:
    """FastAPI's documentation URLs (none with langgraph.json's http.disable_meta)."""
    if meta:
        return {"docs_url": "/docs", "openapi_url": "/openapi.json", "redoc_url": "/redoc"}
    return {"docs_url": None, "openapi_url": None, "redoc_url": None}


def _add_user_middleware(app: FastAPI, user_app: Any) -> None:
    """http.app's middleware, in its order (its first is outermost), around what ``app``
    has so far."""
    for middleware in reversed(user_app.user_middleware):
        app.add_middleware(middleware.cls, *middleware.args, **middleware.kwargs)


def _install_auth(app: FastAPI, settings: Settings, langgraph: Loaded, *, dev: bool,
                  skip: Callable[[Scope], bool] | None = None) -> None:
    """Authenticate every request but the public ones, with langgraph.json's Auth or the
    built-in one (built when the store is open); nothing when no auth is configured."""
    if langgraph.auth is not None and settings.auth == "builtin":
        raise ConfigError('langgraph.json has "auth" and TREADLE_AUTH is builtin: choose one')
    if langgraph.auth is None and settings.auth == "none":
        return
    from treadle.auth.authenticate import Authenticate, public_paths

    deny = settings.auth_default_deny
    app.state.auth_default_deny = (not dev) if deny is None else deny
    if langgraph.auth is not None:
        from treadle.auth.loading import load_auth

        _use_auth(app, load_auth(langgraph.auth), "langgraph.json's auth")
    else:
        try:
            from treadle.auth.builtin import build_auth
        except ImportError as exc:
            raise ConfigError(f"built-in auth is not available ({exc}): unset TREADLE_AUTH "
                              "/ --auth, or configure auth in langgraph.json") from exc
        app.state.build_auth = build_auth
        if settings.encryption is None:  # the keyring's fields are known before the store opens
            from treadle.auth.builtin import refuse_sealed_tenant
            from treadle.store import encryption

            refuse_sealed_tenant(encryption.build(settings))
    app.add_middleware(Authenticate, auth_of=lambda: getattr(app.state, "auth", None),
                       public=public_paths(info=settings.public_info,
                                           metrics=settings.public_metrics), skip=skip,
                       public_prefixes=(settings.console_path,) if settings.console else ())


def _use_auth(app: FastAPI, auth: object, where: str) -> None:
    from treadle.auth.authorize import Authorizer
    from treadle.auth.loading import check_auth

    app.state.auth = check_auth(auth, where)
    app.state.authorizer = Authorizer(auth, default_deny=app.state.auth_default_deny)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("treadle")
    except PackageNotFoundError:  # pragma: no cover
        return "0"


# treadle's errors -> HTTP statuses, the first match wins (the rest are a 500). Below the
# route modules nothing raises HTTPException: the run service, the scheduler and the
# checks raise these, and the one handler below answers ``{"detail": <message>}``.
_STATUS: list[tuple[type[TreadleError], int]] = [
    (AccessFilterError, 500), (RefusedConfigError, 400), (NotFoundError, 404), (ConflictError, 409),
    (InputError, 422), (ConfigError, 422), (StoreUnavailableError, 503),
]


def http_status(exc: TreadleError) -> int:
    """The HTTP status that answers ``exc``."""
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 500)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TreadleError)
    async def treadle_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, TreadleError)
        status = http_status(exc)
        if status == 500:
            log.error("request failed: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": redact(str(exc))}, status_code=status)


async def _purge_events(ctx: Ctx) -> None:
    """Delete the stream events of runs that ended longer ago than the retention, and
    store items whose TTL has passed (reads already skip them)."""
    while True:
        await asyncio.sleep(min(60.0, max(1.0, ctx.settings.event_retention / 10)))
        try:
            await asyncio.to_thread(ctx.store.purge_events, ctx.settings.event_retention)
            await asyncio.to_thread(ctx.store.sweep_items)
        except TreadleError as exc:
            log.warning("purging old stream events or expired items failed (%s)", exc)


