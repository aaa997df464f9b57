"""Semantic search's exact-cosine scan rate (langgraph.json ``store.index``).

treadle ranks a search ``query`` by exact cosine similarity over every candidate vector (the
items under the namespace prefix that pass the filter), in SQL by sqlite-vec or pgvector where
there is one, else in Python; there is no approximate index. This measures how many candidate items per second one search scans at
384 dimensions (all-MiniLM-L6-v2's size), one vector per item, on SQLite (and PostgreSQL
with ``--pg-url``): the time of ``ItemStore.search_items`` (reading the rows and ranking
them), median of a few searches, divided into the number of items.

    PYTHONPATH=src python -m bench.semantic [--items 20000] [--dims 384] [--pg-url URL]

With pgvector installed in the PostgreSQL database (CREATE EXTENSION vector), PostgreSQL ranks
in SQL (the line printed says which ranking ran).

A search's latency is about items / rate: keep the items one search ranks (those under its
namespace prefix) to what your latency budget allows (docs/operations.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.items import ItemSearch, ItemWrite
from treadle.store.vectors import encode


def measure(store: Store, items: int, dims: int, searches: int = 5) -> float:
    rng = random.Random(7)
    batch: list[ItemWrite] = []
    for n in range(items):
        vector = [rng.uniform(-1, 1) for _ in range(dims)]
        batch.append(ItemWrite.put(("bench",), f"k{n}", {"n": n}, None, [("$", 0, encode(vector))]))
        if len(batch) == 1000:
            store.write_items(batch)
            batch = []
    if batch:
        store.write_items(batch)
    times = []
    for _ in range(searches):
        query = tuple(rng.uniform(-1, 1) for _ in range(dims))
        started = time.perf_counter()
        found = store.search_items(ItemSearch(("bench",), limit=10, query_vector=query))
        times.append(time.perf_counter() - started)
        assert len(found) == 10 and found[0].score is not None
    return items / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--pg-url", default=None, help="also measure on this (empty) database")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, open_store(f"sqlite:///{tmp}/s.db") as store:
        rate = measure(store, args.items, args.dims)
        print(f"sqlite: {args.items} items x {args.dims} dims: {rate:,.0f} items/s scanned")
    if args.pg_url:
        with open_store(args.pg_url) as store:
            rate = measure(store, args.items, args.dims)
            print(f"postgres: {args.items} items x {args.dims} dims: {rate:,.0f} items/s scanned "
                  f"({store.vector_ranking()})")


if __name__ == "__main__":
    main()
