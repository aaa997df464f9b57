"""What a page of the console's history costs on a long thread.

The console's timeline asks ``POST /threads/{id}/history`` for 21 checkpoints at a time:
the newest first, then those ``before`` the last one fetched. This builds threads of
``--sizes`` checkpoints (a one-node loop, one checkpoint per step) on a store, then times,
through the real app (FastAPI's TestClient, in process), the first page and a page ``before``
a checkpoint near the thread's start (the deepest page a reader can reach), and ``GET
/threads/{id}/state``, against the same calls on a 60-checkpoint thread measured in the
same run.

    PYTHONPATH=src python -m bench.console_history [--sizes 1000 5000] [--repeat 15]
        [--pg-url postgresql://postgres@127.0.0.1:5432/test]

Prints the median milliseconds per call and the ratio to the 10-checkpoint thread.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REFERENCE = 60  # checkpoints of the thread the others are compared with
GRAPH = Path(__file__).resolve().parents[1] / "tests" / "e2e" / "console_graphs" / "counter.py"


def median_ms(call: Callable[[], Any], repeat: int) -> float:
    call()  # warm
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def pages(http: Any, thread: str, deep: str, repeat: int) -> list[tuple[str, float]]:
    """The median ms of the first history page, the page before ``deep`` and the state."""

    def first() -> None:
        assert len(http.post(f"/threads/{thread}/history", json={"limit": 21}).json()) == 21

    def last() -> None:
        page = http.post(f"/threads/{thread}/history", json={
            "limit": 21, "before": {"configurable": {"checkpoint_id": deep}}}).json()
        assert len(page) == 21

    def state() -> None:
        assert http.get(f"/threads/{thread}/state").status_code == 200

    return [(name, median_ms(call, repeat))
            for name, call in (("first page", first), ("deepest page", last), ("state", state))]


def measure(store: str, sizes: list[int], repeat: int) -> list[tuple[int, str, float]]:
    from fastapi.testclient import TestClient

    from treadle.config import Settings
    from treadle.server.app import create_app

    app = create_app(Settings(store=store), {"counter": f"{GRAPH}:graph"}, in_process_worker=True)
    rows: list[tuple[int, str, float]] = []
    with TestClient(app) as http:
        for size in [REFERENCE, *sizes]:
            thread = http.post("/threads", json={}).json()["thread_id"]
            done = http.post(f"/threads/{thread}/runs/wait", json={
                "assistant_id": "counter", "input": {"goal": size - 2},
                "config": {"recursion_limit": size + 10}}, timeout=3600)
            assert done.status_code == 200, done.text
            # the checkpoint of step 20: the page before it is the thread's first
            found = http.post(f"/threads/{thread}/history",
                              json={"limit": 1, "metadata": {"step": 20}}).json()
            deep = found[0]["checkpoint"]["checkpoint_id"]
            count = http.get(f"/threads/{thread}/storage").json()["checkpoints"]

            rows += [(count, name, ms) for name, ms in pages(http, thread, deep, repeat)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--pg-url", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stores = [("sqlite", f"sqlite:///{tmp}/history.db")]
        if args.pg_url:
            stores.append(("postgresql", args.pg_url))
        for label, url in stores:
            rows = measure(url, args.sizes, args.repeat)
            reference = {name: ms for n, name, ms in rows if n == rows[0][0]}
            print(f"\n{label}: median ms per call (ratio to a {rows[0][0]}-checkpoint thread)")
            for n, name, ms in rows:
                print(f"  {n:>6} checkpoints  {name:<13} {ms:8.2f} ms  x{ms / reference[name]:.2f}")


if __name__ == "__main__":
    main()
