"""langgraph.json's ``http`` section: its keys (for :data:`treadle.langgraph_json.KEYS`) and
:class:`HttpOptions`, the checked section the server applies.

What each key does is in :data:`HTTP_KEYS` (the table of docs/api.md). Values are checked at
start-up, each mistake one :class:`~treadle.errors.ConfigError` line; ``http.app`` is only
resolved here (its file made absolute): :mod:`treadle.server.custom_app` imports it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from treadle.errors import ConfigError

if TYPE_CHECKING:  # langgraph_json imports this module
    from treadle.langgraph_json import Key

__all__ = ["DISABLE_GROUPS", "NEVER_COPIED", "HeaderPatterns", "HttpOptions", "http_keys",
           "http_options"]

#: The route groups ``http.disable_<group>`` removes (treadle.server.route_groups).
DISABLE_GROUPS = ("assistants", "threads", "runs", "crons", "store", "meta")
#: Request headers never copied into a run's config, whatever the patterns say.
NEVER_COPIED = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key",
                          "x-service-key", "x-tenant-id"})
_ORDERS = ("middleware_first", "auth_first")


def http_keys(key: type[Key]) -> tuple[Key, ...]:
    """The ``http.*`` rows of :data:`treadle.langgraph_json.KEYS` (CORS's are there)."""
    disabled = {
        "assistants": "the /assistants routes",
        "threads": "the /threads routes (GET /threads/{id}/stream included; a thread's runs "
                   "and its protocol belong to disable_runs)",
        "runs": "all the run routes (stateless /runs/*, /threads/{id}/runs/*, the crons, "
                "and the thread protocol's /threads/{id}/commands and /stream/events, as "
                "in langgraph-api)",
        "crons": "the cron routes alone (/runs/crons/*, /threads/{id}/runs/crons; "
                 "treadle's addition)",
        "store": "the /store routes",
        "meta": "/info, /metrics, /docs, /redoc and /openapi.json (/ok, /healthz and "
                "/readyz stay)",
    }
    return (
        key("http.app", "honoured", '"path.py:attr" or "module:attr" of a Starlette or '
            "FastAPI app: its routes are served beside treadle's (before them, but after "
            "/ok, /healthz, /readyz, /metrics, /docs, /redoc and /openapi.json), its "
            "middleware wraps every route, its lifespan runs inside treadle's",
            kind="string"),
        key("http.mount_prefix", "honoured", 'serve the API under this path ("/my-api"); '
            "/ok, /healthz, /readyz and /metrics also answer at the root", kind="string"),
        key("http.configurable_headers", "honoured", "request headers copied into the "
            "`configurable` of the runs a request creates: those matching `includes` and no "
            "`excludes` pattern (`*` wildcard, case-insensitive); none without it; never "
            f"{', '.join(sorted(NEVER_COPIED))}", children=True),
        key("http.configurable_headers.includes", "honoured", "header patterns to copy",
            kind="list of strings"),
        key("http.configurable_headers.excludes", "honoured", "header patterns never to copy "
            "(they win over includes)", kind="list of strings"),
        key("http.configurable_headers.include", "honoured", "alias of includes",
            kind="list of strings"),
        key("http.configurable_headers.exclude", "honoured", "alias of excludes",
            kind="list of strings"),
        *(key(f"http.disable_{group}", "honoured", f"true: {what} answer 404",
              kind="boolean") for group, what in disabled.items()),
        key("http.disable_webhooks", "honoured", "true: runs with a webhook run, but no "
            "webhook is sent (by the API's worker, and by `treadle worker --config` with this "
            "file); URLs are still checked when runs are created", kind="boolean"),
        key("http.disable_mcp", "honoured", "true: treadle does not serve POST /mcp (the "
            "assistants as MCP tools): it answers 404", kind="boolean"),
        key("http.disable_a2a", "honoured", "true: treadle does not serve POST "
            "/a2a/{assistant_id} and GET /.well-known/agent-card.json (the assistants as A2A "
            "agents): they answer 404", kind="boolean"),
        key("http.disable_ui", "honoured", "treadle serves no /ui routes, so true or false "
            "changes nothing", kind="boolean"),
        key("http.logging_headers", "honoured", "treadle logs no request headers (no access "
            "log), which is what the strictest patterns give"),
        key("http.middleware_order", "honoured", '"middleware_first" (default): http.app\'s '
            'middleware runs before authentication, around every route; "auth_first": '
            "after it", kind="string"),
        key("http.enable_custom_route_auth", "honoured", "true: http.app's routes are "
            "authenticated like treadle's (the user is `request.user`); default false: "
            "they are not", kind="boolean"),
    )


@dataclass(frozen=True)
class HeaderPatterns:
    """``http.configurable_headers``: which request headers a run's ``configurable`` gets."""

    includes: tuple[re.Pattern[str], ...] = ()
    excludes: tuple[re.Pattern[str], ...] = ()

    def copied(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers (names lower-cased) to copy: matching an include and no exclude,
        never one of :data:`NEVER_COPIED` (the server also drops the names a client's
        config may not hold: ``treadle.server.run_config.run_headers``)."""
        if not self.includes:
            return {}
        out: dict[str, str] = {}
        for raw, value in headers.items():
            name = raw.lower()
            if name in NEVER_COPIED:
                continue
            if any(p.fullmatch(name) for p in self.excludes):
                continue
            if any(p.fullmatch(name) for p in self.includes):
                out[name] = value
        return out


@dataclass(frozen=True)
class HttpOptions:
    """The checked ``http`` section (CORS is :func:`treadle.langgraph_json.cors_options`)."""

    app: str | None = None  # "path:attr", its file made absolute
    mount_prefix: str = ""  # "" or "/a/b" (no trailing slash)
    disabled: frozenset[str] = frozenset()  # of DISABLE_GROUPS
    disable_webhooks: bool = False
    headers: HeaderPatterns = field(default_factory=HeaderPatterns)
    middleware_order: str = "middleware_first"
    custom_route_auth: bool = False


def http_options(doc: Mapping[str, Any], source: str,
                 resolve: Callable[[str], str]) -> HttpOptions:
    """The ``http`` section of ``doc`` (types already checked by ``check``); ``resolve``
    makes a file path of ``http.app`` absolute."""
    http = doc.get("http") or {}
    order = http.get("middleware_order") or "middleware_first"
    if order not in _ORDERS:
        raise ConfigError(f'{source}: "http.middleware_order" must be "middleware_first" or '
                          f'"auth_first" (got {order!r})')
    return HttpOptions(
        app=_app_ref(http.get("app"), source, resolve),
        mount_prefix=_prefix(http.get("mount_prefix"), source),
        disabled=frozenset(g for g in DISABLE_GROUPS if http.get(f"disable_{g}") is True),
        disable_webhooks=http.get("disable_webhooks") is True,
        headers=_patterns(http.get("configurable_headers") or {}, source),
        middleware_order=order,
        custom_route_auth=http.get("enable_custom_route_auth") is True)


def _app_ref(ref: str | None, source: str, resolve: Callable[[str], str]) -> str | None:
    if ref is None:
        return None
    target, sep, attr = ref.rpartition(":")
    if not sep or not target.strip() or not attr.strip():
        raise ConfigError(f'{source}: "http.app" must be "path/to/app.py:app" or '
                          f'"module:app" (got {ref!r})')
    if target.endswith(".py") or "/" in target:
        return f"{resolve(target)}:{attr}"
    return ref


def _prefix(prefix: str | None, source: str) -> str:
    if prefix is None:
        return ""
    cut = prefix.rstrip("/")
    if not prefix.startswith("/") or re.search(r"[\s?#%]|//", prefix):
        raise ConfigError(f'{source}: "http.mount_prefix" must be a path such as "/my-api" '
                          f"(starting with /, no spaces, ?, #, % or //; got {prefix!r})")
    return cut  # "/" is no prefix, as in langgraph-api


def _patterns(config: Mapping[str, Any], source: str) -> HeaderPatterns:
    def compiled(names: tuple[str, str]) -> tuple[re.Pattern[str], ...]:
        found = config.get(names[0]) or config.get(names[1]) or []
        for pattern in found:
            if not pattern or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", pattern):
                raise ConfigError(f'{source}: "http.configurable_headers.{names[0]}": '
                                  f"{pattern!r} is not a header name pattern (letters, "
                                  "digits, - and the * wildcard)")
        # Only literals and "*": no regular expression from the file (nothing to blow up).
        return tuple(re.compile(".*".join(re.escape(part) for part in p.lower().split("*")))
                     for p in found)

    return HeaderPatterns(compiled(("includes", "include")), compiled(("excludes", "exclude")))
