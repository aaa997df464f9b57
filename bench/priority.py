"""What priority and fair queuing cost a claim (langgraph.json ``priority``).

A claim takes the lowest priority, then the fairness group claimed from least recently,
then the oldest run (``RunStore.claim_run``). It finds each group's best run through an
index and compares the groups' best runs, so its cost grows with the number of groups that
have pending runs, not with the number of pending runs. This queues ``--pending`` runs (one
thread each) and times ``--claims`` claims (each followed by its finish) with the queue that
deep, on SQLite (and PostgreSQL with ``--pg-url``), for:

* ``fifo``: no thread has settings (every run priority 0, group "default"): the reference;
* ``groups=G``: the threads spread over G fairness groups with random priorities -5..5.

    PYTHONPATH=src python -m bench.priority [--pending 10000] [--claims 300] [--pg-url URL]
        [--analyze]   # statistics gathered first, as autovacuum does within a minute
    PYTHONPATH=<checkout of older code>/src python -m bench.priority --fifo-only [...]

Prints the median and 95th percentile claim time and the ratio to ``fifo`` measured in the
same run.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.queue import NewRun

GROUPS = (1, 10, 100, 1000)


def fill(store: Store, pending: int, groups: int | None, analyze: bool = False) -> None:
    rng = random.Random(11)
    if groups is not None:
        from treadle.store.queue import ThreadPriority
    for n in range(pending):
        thread = f"t{n}"
        if groups is not None:
            store.set_thread_priority(thread, ThreadPriority(rng.randint(-5, 5),
                                                             f"g{rng.randrange(groups)}"))
        store.enqueue_run(NewRun(run_id=str(uuid.uuid4()), thread_id=thread, graph_id="ref:g",
                                 payload=b"{}"))
    if analyze:  # statistics as autovacuum would have gathered them by now
        from treadle.store.connector import Sql

        store.db.execute("analysing the queue", Sql("ANALYZE"))


def claims(store: Store, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        row = store.claim_run("bench", ["ref:g"], False, 60.0)
        times.append(time.perf_counter() - started)
        assert row is not None
        store.finish_run(row.run_id, row.epoch, "success")
    return times


def scenario(open_fresh: Callable[[], Store], pending: int, count: int, groups: int | None,
             analyze: bool = False) -> tuple[float, float]:
    with open_fresh() as store:
        fill(store, pending, groups, analyze)
        times = sorted(claims(store, count))
    return statistics.median(times), times[int(len(times) * 0.95)]


def run(name: str, open_fresh: Callable[[], Store], pending: int, count: int,
        fifo_only: bool, analyze: bool = False) -> None:
    base, base95 = scenario(open_fresh, pending, count, None, analyze)
    print(f"{name}: {pending} pending, fifo: median {base * 1e3:.2f} ms, p95 "
          f"{base95 * 1e3:.2f} ms per claim (reference)")
    for g in () if fifo_only else GROUPS:
        med, p95 = scenario(open_fresh, pending, count, g, analyze)
        print(f"{name}: {pending} pending, groups={g}: median {med * 1e3:.2f} ms, p95 "
              f"{p95 * 1e3:.2f} ms per claim, {med / base:.1f}x fifo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--fifo-only", action="store_true",
                        help="only the reference (runs against code older than priority: "
                             "PYTHONPATH=<old checkout>/src)")
    parser.add_argument("--analyze", action="store_true",
                        help="ANALYZE after filling (statistics as autovacuum gathers them)")
    parser.add_argument("--pg-url", default=None,
                        help="also measure on PostgreSQL: a server URL (a database per scenario "
                             "is created and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        counter = iter(range(1_000_000))
        run("sqlite", lambda: open_store(f"sqlite:///{tmp}/q{next(counter)}.db"),
            args.pending, args.claims, args.fifo_only, args.analyze)
    if args.pg_url:
        import psycopg

        made: list[str] = []

        def fresh() -> Store:
            name = f"treadle_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            made.append(name)
            base = args.pg_url.rsplit("/", 1)[0]
            return open_store(f"{base}/{name}", auto_migrate=True)

        try:
            run("postgres", fresh, args.pending, args.claims, args.fifo_only, args.analyze)
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as admin:
                for name in made:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
