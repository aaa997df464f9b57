"""Which of treadle's routes langgraph.json's ``http.disable_<group>`` keys remove.

The groups follow langgraph-api: ``runs`` is every run route (stateless and a thread's),
the crons (their paths are under ``/runs``) and the thread protocol's command and event
routes (they start runs); ``threads`` is the rest of ``/threads``; ``crons`` (treadle's
addition) the cron routes alone; ``meta`` the server's description and metrics. The
probes (``/ok``, ``/healthz``, ``/readyz``) belong to no group: they are always served.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from starlette.routing import BaseRoute

__all__ = ["META_PATHS", "groups_of", "prune"]

META_PATHS = frozenset({"/info", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/openapi.json"})
_THREAD = r"/threads/\{[^}/]+\}"
_CRONS = re.compile(rf"(/runs|{_THREAD}/runs)/crons(/.*)?")
_RUNS = re.compile(rf"(/runs|{_THREAD}/runs|{_THREAD}/commands|{_THREAD}/stream/events)(/.*)?")


def groups_of(path: str) -> frozenset[str]:
    """The groups whose disabling removes the route of template ``path``."""
    if path in META_PATHS:
        return frozenset({"meta"})
    if _CRONS.fullmatch(path):
        return frozenset({"crons", "runs"})
    if _RUNS.fullmatch(path):
        return frozenset({"runs"})
    for group in ("assistants", "threads", "store"):
        if path == f"/{group}" or path.startswith(f"/{group}/"):
            return frozenset({group})
    return frozenset()


def prune(routes: list[BaseRoute], disabled: Collection[str]) -> None:
    """Remove from ``routes`` (in place) those of the ``disabled`` groups."""
    if disabled:
        routes[:] = [r for r in routes
                     if not groups_of(getattr(r, "path", "")) & frozenset(disabled)]
