"""Typed settings read from ``TREADLE_*`` environment variables.

Every setting has a CLI flag twin (see ``treadle --help``); flags win over the
environment, the environment wins over these defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from treadle.errors import ConfigError

__all__ = ["DEFAULT_STORE", "Settings", "get_settings", "merge_config"]

DEFAULT_STORE = "sqlite:///" + str(Path(".treadle") / "treadle.db")
_URL_PASSWORD = re.compile(r"(?P<head>://[^\s:/@?#]*:)[^\s@/]+(?=@)")


class Settings(BaseSettings):
    """Runtime-wide settings. Field ``x`` is read from ``TREADLE_X``."""

    model_config = SettingsConfigDict(env_prefix="TREADLE_", extra="ignore")

    def __repr_args__(self) -> Any:
        # The store URL's password never shows in a repr (a traceback, a debugger, a log);
        # secret settings are SecretStr (tests/unit/test_secret_settings.py checks it).
        for name, value in super().__repr_args__():
            yield name, (_URL_PASSWORD.sub(r"\g<head>***", value)
                         if name == "store" and isinstance(value, str) else value)

    store: str = Field(DEFAULT_STORE, description="Store URL: sqlite:///path or postgresql://...")
    max_workers: int | None = Field(
        None, ge=1, description="Bound on concurrent node tasks per run (all pools)."
    )
    thread_workers: int = Field(64, ge=1, description="Default thread-pool size for sync nodes.")
    async_workers: int = Field(1024, ge=1, description="Default concurrency for async nodes.")
    process_workers: int = Field(0, ge=0, description="Process-pool size; 0 means CPU count.")
    retry_max_attempts: int = Field(5, ge=1, description="Default attempts per node task.")
    retry_initial_interval: float = Field(0.5, ge=0, description="First backoff, seconds.")
    retry_backoff_factor: float = Field(2.0, ge=1, description="Backoff multiplier.")
    retry_max_interval: float = Field(30.0, ge=0, description="Longest backoff, seconds.")
    retry_jitter: bool = Field(True, description="Randomise backoff to avoid thundering herds.")
    node_timeout: float | None = Field(None, gt=0, description="Default per-attempt timeout (s).")
    sandbox_network: str = Field(
        "required", pattern="^(required|best-effort)$",
        description="A sandboxed node with network off when the kernel refuses a network "
        "namespace: 'required' fails the attempt (SandboxUnavailableError), 'best-effort' runs "
        "it with network and logs a warning.",
    )
    breaker_threshold: int = Field(
        10,
        ge=0,
        description="Consecutive failed attempts that open a node's breaker; 0 disables. "
        "Keep it above retry_max_attempts so one task using up its retries does not trip it.",
    )
    breaker_cooldown: float = Field(30.0, ge=0, description="Seconds a breaker stays open.")
    write_linger_ms: float = Field(
        2.0, ge=0, description="How long a task's writes may wait to share a commit."
    )
    connect_timeout: float = Field(5.0, gt=0, description="Store connect timeout, seconds.")
    durability: str = Field("sync", pattern="^(sync|async|exit)$", description="LangGraph durability.")
    debug: bool = Field(False, description="Show tracebacks in the CLI.")
    auto_migrate: bool = Field(
        True, description="Apply pending migrations when a process opens the store. Off (as in "
        "Kubernetes, where a Job runs `treadle migrate --phase pre`): refuse to start while a "
        "pre migration is missing.",
    )
    # --- encryption at rest (treadle.store.encryption; docs: security.md) ----------------
    encryption_keys: SecretStr | None = Field(
        None, description="AES-256-GCM keyring 'id:base64key,...' (first encrypts, all "
        "decrypt; `treadle keygen` makes a key). Set: checkpoints, task writes, events, items, "
        "run inputs and results are encrypted at rest.",
    )
    encryption: str | None = Field(
        None, description="'path.py:attr' of a langgraph_sdk Encryption (langgraph.json "
        "\"encryption.path\" sets it) whose handlers encrypt instead of the keyring.",
    )
    encrypted_metadata_fields: str = Field(
        "", description="Comma-separated metadata keys encrypted (threads, runs, checkpoints); "
        "other keys stay plaintext so filters can use them.",
    )
    encryption_allow_plaintext: bool = Field(
        False, description="With encryption on, read rows written before it as plaintext "
        "(migration only); off: such rows are refused.",
    )
    # --- cluster workers (treadle worker) ---------------------------------------------
    worker_concurrency: int = Field(
        1000, ge=1, description="Most runs a worker carries at once. Async runs are cheap (a "
        "coroutine and its state, no thread): memory and event-loop lag hold a worker back first "
        "(worker_max_rss_mb, worker_max_loop_lag); sync node bodies keep their own bound "
        "(thread_workers).",
    )
    worker_max_rss_mb: float | None = Field(
        None, ge=0, description="A worker stops claiming runs while its resident memory is "
        "above this many MB (its runs in flight go on); unset: 80% of the container's memory "
        "limit, or of the machine's RAM; 0: no bound.",
    )
    worker_max_loop_lag: float = Field(
        2.0, ge=0, description="A worker stops claiming runs while its event loop lags more "
        "than this many seconds (its CPU is saturated; another worker takes them); 0: no bound.",
    )
    store_threads: int = Field(
        64, ge=1, description="Threads running store calls for the event loop of a server or a "
        "worker process (asyncio's default executor).",
    )
    worker_task_slots: int = Field(
        4, ge=0, description="Remote node tasks a worker executes at once (0: none)."
    )
    lease_ttl: float = Field(
        10.0, gt=0, description="Seconds a worker's lease lasts without a heartbeat."
    )
    max_worker_losses: int = Field(
        10, ge=1, description="Times a run may lose its worker (killed, OOM, lease expired) "
        "before it errors; counted apart from node failures.",
    )
    sweep_interval: float = Field(
        0.5, gt=0, description="Seconds between a worker's sweeps for runs of dead workers.",
    )
    drain_timeout: float = Field(
        30.0, ge=0, description="On SIGTERM, seconds to let node tasks in flight finish."
    )
    poll_interval: float = Field(
        1.0, gt=0, description="Seconds between queue polls when notifications are missed."
    )
    run_max_handbacks: int = Field(
        20, ge=0, description="Times a run may be handed back to the queue without an attempt "
        "counted (a worker draining, the store failing under it) before it fails.",
    )
    max_abandoned_threads: int = Field(
        64, ge=1, description="Sync node bodies a worker may abandon (still running after their "
        "run was cancelled or timed out) before it stops claiming, hands its runs back and exits "
        "with code 75 so its supervisor restarts it.",
    )
    allow_pickled_graphs: bool = Field(
        False, description="Let workers load graphs shipped by value (runs code from the store)."
    )
    unserved_warning: float = Field(
        3.0, ge=0, description="Seconds a distributed run's caller waits before saying that no "
        "live worker serves the run's graph (and how to start one).",
    )
    queue_timeout: float | None = Field(
        None, gt=0, description="Seconds a distributed run may wait for a worker to claim it; "
        "then it is cancelled (QueueTimeoutError). Unset: wait as long as it takes.",
    )
    run_timeout: float = Field(
        3600.0, ge=0, description="Default longest run, in seconds from its first start, for runs "
        "that set no run_timeout of their own; then it ends with status timeout and frees its "
        "worker slot. 0: no limit.",
    )
    run_max_attempts: int = Field(
        3, ge=1, description="Recorded on runs queued through the HTTP API (worker losses count against "
        "max_worker_losses instead)."
    )
    # --- HTTP server (treadle dev / treadle serve) ----------------------------------------
    host: str = Field("127.0.0.1", description="Address the server listens on.")
    port: int = Field(2024, ge=0, le=65535, description="Port the server listens on.")
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest request body accepted (413 above it)."
    )
    event_retention: float = Field(
        3600.0, ge=0, description="Seconds a finished run's stream events are kept for rejoining."
    )
    sse_heartbeat: float = Field(
        10.0, gt=0, description="Seconds between SSE keep-alive comments on a quiet stream."
    )
    webhook_max_attempts: int = Field(5, ge=1, description="Deliveries tried per webhook.")
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds per webhook delivery.")
    webhook_secret: SecretStr | None = Field(
        None, description="Key of the HMAC-SHA256 signature every webhook delivery carries "
        "(X-Treadle-Signature); unset: deliveries are not signed. Environment only.",
    )
    allowed_hosts: str | None = Field(
        None, description="Host headers the API answers (comma-separated names, *.domain "
        "wildcards, or *); unset: loopback names only in `treadle dev`, any in `treadle serve`.",
    )
    cron_interval: float = Field(
        1.0, gt=0, description="Seconds between checks for due crons (each replica)."
    )
    thread_ttl: str | None = Field(
        None, description="Thread TTLs as langgraph.json's checkpointer.ttl (a JSON object, "
        "or minutes: its default_ttl), replacing it (as LANGGRAPH_THREAD_TTL does).",
    )
    ttl_sweep_interval: float | None = Field(
        None, gt=0, description="Seconds between the thread TTL sweeps of each API replica; "
        "unset: checkpointer.ttl's sweep_interval_minutes (default 5 minutes).",
    )
    shutdown_delay: float = Field(
        0.0, ge=0, description="On SIGTERM, seconds the API keeps serving with /readyz failing "
        "before it stops listening (lets a load balancer take it out of rotation).",
    )
    # --- auth (treadle dev / treadle serve) ----------------------------------------------
    auth: str = Field(
        "none", pattern="^(none|builtin)$",
        description="none, or builtin (API keys and JWTs); a custom langgraph_sdk.Auth comes "
        'from langgraph.json\'s "auth".',
    )
    auth_default_deny: bool | None = Field(
        None, description="Refuse any (resource, action) no auth handler covers; unset: on in "
        "`treadle serve` when auth is configured, off in `treadle dev`.",
    )
    # --- the web console (treadle.console) ------------------------------------------------
    console: bool = Field(
        True, description="Serve the web console (graphs, threads, runs, approvals, operations) "
        "at console_path; its pages call the API with the browser user's credentials.",
    )
    operator_tenants: str = Field(
        "", description="Comma-separated tenants whose admins may read the cluster-wide views "
        "(/operations, the console's Operations page); an admin of another tenant may not. "
        "Built-in auth keys always belong to a tenant: make an operators' one (--tenant ops).",
    )
    console_path: str = Field(
        "/console", description="Path of the web console, such as /console or /ops/console.",
    )

    @field_validator("console_path")
    @classmethod
    def _a_path(cls, value: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError("must be a path such as /console or /ops/console (letters, digits "
                             "and . _ ~ - between slashes, no trailing slash)")
        return value
    public_info: bool = Field(True, description="Serve /info without credentials.")
    public_metrics: bool = Field(True, description="Serve /metrics without credentials.")
    # --- operations: probes, metrics, traces, logs ------------------------------------------
    worker_port: int | None = Field(
        None, ge=0, le=65535,
        description="Port of a worker's HTTP endpoint (/healthz, /readyz, /metrics); unset: none.",
    )
    log_format: str = Field(
        "auto", pattern="^(auto|json|console)$",
        description="Log lines as JSON objects or readable console text; auto: console in "
        "`treadle dev`, JSON elsewhere.",
    )
    log_level: str = Field(
        "info", pattern="^(?i:debug|info|warning|error)$", description="Lowest level logged."
    )
    trace_exporter: str = Field(
        "none", pattern="^(none|otlp|console)$",
        description="Where OpenTelemetry spans go: none, otlp (OTLP over HTTP) or console.",
    )
    otlp_endpoint: str | None = Field(
        None, description="OTLP/HTTP endpoint (e.g. http://collector:4318); unset: the standard "
        "OTEL_EXPORTER_OTLP_* variables decide.",
    )
    # --- built-in auth (TREADLE_AUTH=builtin: treadle.auth.builtin) ------------------------
    jwt_secret: SecretStr | None = Field(
        None, description="Built-in auth: the shared secret of HS256 JWT bearer tokens."
    )
    jwt_jwks_url: str | None = Field(
        None, description="Built-in auth: the JWKS URL whose keys sign RS/ES/PS JWT bearer tokens."
    )
    jwt_issuer: str | None = Field(None, description="Built-in auth: the JWTs' required `iss`.")
    jwt_audience: str | None = Field(None, description="Built-in auth: the JWTs' required `aud`.")
    jwt_role_claim: str = Field(
        "role", min_length=1, description="Built-in auth: the JWT claim holding the role."
    )
    jwt_tenant_claim: str = Field(
        "tenant", min_length=1, description="Built-in auth: the JWT claim holding the tenant."
    )
    require_approver_to_resume: bool = Field(
        True, description="Built-in auth: resuming an interrupt (a run with a resume command, "
        "a state update of an interrupted thread) needs the approver role.",
    )



def merge_config(base: Mapping[str, Any] | None, given: Mapping[str, Any] | None = None,
                 **configurable: Any) -> dict[str, Any]:
    """A run config: ``given`` over ``base``, their ``configurable`` merged the same way,
    then ``configurable`` keyword overrides. A new dict, with a new ``configurable`` dict:
    the inputs are never changed. The one place configs are combined (assistant and
    request, graph and call, a queued run's and its attempt's)."""
    base, given = base or {}, given or {}
    merged = {**base, **given}
    merged["configurable"] = {**(base.get("configurable") or {}),
                              **(given.get("configurable") or {}), **configurable}
    return merged


#: Settings whose values an error never repeats (they may hold passwords or keys).
_UNSHOWN = frozenset({"store", "jwt_secret", "jwt_jwks_url"})


def get_settings(*, as_flags: bool = False, **overrides: object) -> Settings:
    """Settings from the environment, with explicit non-None overrides applied.

    A bad value raises :class:`~treadle.errors.ConfigError`, one line naming the
    setting (as given here — a keyword, or a CLI flag with ``as_flags`` — or its
    ``TREADLE_*`` variable) and what it must be."""
    # Values are validated (and coerced) by pydantic at runtime.
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err.get("loc", ())) or "?"
            env = f"TREADLE_{field.upper()}"
            given = f"--{field.replace('_', '-')}" if as_flags else f"{field}="
            where = f"{given} / {env}" if field in values else env
            shown = "" if field in _UNSHOWN else f" (got {err.get('input')!r})"
            problems.append(f"{where}: {_readable(str(err.get('msg', 'invalid')))}{shown}")
        raise ConfigError("invalid setting " + "; ".join(problems)) from None


def _readable(msg: str) -> str:
    """pydantic's "String should match pattern '^(a|b)$'" as "must be one of a, b"."""
    msg = msg.removeprefix("Value error, ")  # a validator's own words
    match = re.fullmatch(r"String should match pattern '\^\((?:\?i:)?([\w|]+)\)\$'", msg)
    return f"must be one of {', '.join(match.group(1).split('|'))}" if match else msg
