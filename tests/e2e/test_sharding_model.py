"""The scale model of docs/operations.md §4 ("Beyond one database"), checked as written.

Two independent treadle deployments ("cells"), each on its own database, and a router of a
few lines that picks a cell from the thread id: what the docs claim holds — a thread's state,
runs and history live in one cell only; default assistants have the same id in every cell;
thread ids chosen by the router route every later call; a search sees only its own cell's
threads, so the router must fan out and merge; long-term memory (the store) is not shared
between cells.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

from processes import ServerProcess, StartServer

pytestmark = pytest.mark.timeout(180)


def _cell_of(thread_id: str, cells: int) -> int:
    """The router's rule: a stable hash of the thread id (never Python's salted hash())."""
    return int.from_bytes(hashlib.sha256(thread_id.encode()).digest()[:8], "big") % cells


class Router:
    """What the docs ask of a router: ids chosen before the first call, calls routed by id,
    searches fanned out to every cell and merged."""

    def __init__(self, clients: list[LangGraphClient]) -> None:
        self.clients = clients

    def for_thread(self, thread_id: str) -> LangGraphClient:
        return self.clients[_cell_of(thread_id, len(self.clients))]

    async def create_thread(self) -> str:
        thread_id = str(uuid.uuid4())
        await self.for_thread(thread_id).threads.create(thread_id=thread_id)
        return thread_id

    async def search_threads(self, limit: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for client in self.clients:
            found += [dict(t) for t in await client.threads.search(limit=limit)]
        found.sort(key=lambda t: str(t["created_at"]), reverse=True)
        return found[:limit]


@pytest.fixture
def cells(start_server: StartServer, tmp_path: Any) -> list[ServerProcess]:
    return [start_server("dev", store=f"sqlite:///{tmp_path / f'cell{i}.db'}") for i in range(2)]


async def test_threads_sharded_by_id_across_two_deployments(cells: list[ServerProcess]) -> None:
    clients = [get_client(url=c.url) for c in cells]
    router = Router(clients)

    # Default assistants (one per graph of langgraph.json) have the same id in every cell.
    ids = [{a["graph_id"]: a["assistant_id"] for a in await c.assistants.search(limit=100)}
           for c in clients]
    assert ids[0] == ids[1] and "chain" in ids[0]

    threads = [await router.create_thread() for _ in range(16)]
    placed = [_cell_of(t, 2) for t in threads]
    assert set(placed) == {0, 1}, "16 random ids landed in one cell: the hash is broken"
    for thread_id in threads:
        result = await router.for_thread(thread_id).runs.wait(thread_id, ids[0]["chain"],
                                                              input={"n": 0})
        assert isinstance(result, dict) and result["n"] == 10

    for thread_id, cell in zip(threads, placed, strict=True):
        # Everything about the thread is in its own cell ...
        state = await clients[cell].threads.get_state(thread_id)
        assert state["values"] == {"n": 10}
        history = await clients[cell].threads.get_history(thread_id, limit=100)
        assert len(history) == 12
        # ... and nothing in the other one.
        with pytest.raises(NotFoundError):
            await clients[1 - cell].threads.get(thread_id)

    # A search sees only its own cell's threads; the router's fan-out sees them all.
    own = [{t["thread_id"] for t in await c.threads.search(limit=100)} for c in clients]
    assert own[0].isdisjoint(own[1])
    assert own[0] | own[1] == set(threads)
    merged = await router.search_threads(limit=100)
    assert {t["thread_id"] for t in merged} == set(threads)

    # Long-term memory is per cell: an item put through one cell is absent from the other.
    await clients[0].store.put_item(["users", "u1"], "profile", {"name": "Ada"})
    assert (await clients[0].store.get_item(["users", "u1"], "profile")) is not None
    assert (await clients[1].store.get_item(["users", "u1"], "profile")) is None
