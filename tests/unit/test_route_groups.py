"""Which routes each ``http.disable_<group>`` of langgraph.json removes (as langgraph-api
groups them; ``crons`` is treadle's addition)."""

from __future__ import annotations

import pytest

from treadle.server.route_groups import groups_of


@pytest.mark.parametrize(("path", "groups"), [
    ("/assistants", {"assistants"}), ("/assistants/{assistant_id}/graph", {"assistants"}),
    ("/threads", {"threads"}), ("/threads/{thread_id}/state", {"threads"}),
    ("/threads/{thread_id}/stream", {"threads"}), ("/threads/{thread_id}/storage", {"threads"}),
    ("/threads/{thread_id}/runs", {"runs"}), ("/threads/{thread_id}/runs/{run_id}/join", {"runs"}),
    ("/threads/{thread_id}/commands", {"runs"}),
    ("/threads/{thread_id}/stream/events", {"runs"}),
    ("/runs", {"runs"}), ("/runs/wait", {"runs"}), ("/runs/batch", {"runs"}),
    ("/runs/crons", {"runs", "crons"}), ("/runs/crons/{cron_id}", {"runs", "crons"}),
    ("/threads/{thread_id}/runs/crons", {"runs", "crons"}),
    ("/store/items", {"store"}), ("/info", {"meta"}), ("/metrics", {"meta"}),
    ("/openapi.json", {"meta"}), ("/docs", {"meta"}),
    ("/ok", set()), ("/healthz", set()), ("/readyz", set()), ("/audit", set()),
    ("/assistantsx", set()),
])
def test_route_groups(path: str, groups: set[str]) -> None:
    assert groups_of(path) == groups


def test_every_api_route_is_in_a_group() -> None:
    """A route added later lands in a group (or is named here on purpose)."""
    from treadle.server.routes import (
        assistants,
        audit,
        crons,
        meta,
        runs,
        store,
        thread_storage,
        thread_stream,
        threads,
    )

    ungrouped = {"/ok", "/healthz", "/readyz", "/audit", "/audit/verify"}
    for module in (assistants, audit, crons, meta, runs, store, thread_storage, thread_stream,
                   threads):
        for route in module.router.routes:
            path = getattr(route, "path", "")
            assert bool(groups_of(path)) != (path in ungrouped), path
