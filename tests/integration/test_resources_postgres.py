"""The API resources on PostgreSQL: the backend contract, plus replicas racing for cron ticks."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from resources_contract import ResourcesContract, cron
from treadle.store import Store, open_store

pytestmark = pytest.mark.postgres


class TestPostgresResources(ResourcesContract):
    """The backend-independent resources contract (tests/resources_contract.py)."""

    @pytest.fixture
    def store(self, pg_url: str) -> Iterator[Store]:
        store = open_store(pg_url, auto_migrate=True)
        try:
            yield store
        finally:
            store.close()


def test_migration_creates_the_resource_tables(pg_store: Store) -> None:
    assert pg_store.schema_version() >= 4
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
    assert {"treadle_assistants", "treadle_assistant_versions", "treadle_thread_records",
            "treadle_crons"} <= tables
    assert {"treadle_assistants_metadata", "treadle_thread_records_metadata",
            "treadle_crons_due"} <= indexes
    assert pg_store.migrate() == []


def test_replicas_race_for_cron_ticks(pg_url: str) -> None:
    """Schedulers on separate stores (separate pools, as separate replicas): every tick of
    every cron is won by exactly one of them."""
    stores = [open_store(pg_url, auto_migrate=True) for _ in range(3)]
    try:
        crons, ticks = 5, 8
        for i in range(crons):
            stores[0].put_cron(cron(f"c{i}", next_run_at=1.25))
        wins: list[list[tuple[str, float]]] = [[] for _ in stores]
        barrier = threading.Barrier(len(stores))
        errors: list[BaseException] = []

        def scheduler(n: int) -> None:
            store = stores[n]
            try:
                for tick in range(ticks):
                    now = tick + 1.5
                    barrier.wait(30)
                    for c in store.due_crons(now):
                        assert c.next_run_at is not None
                        if store.advance_cron(c.cron_id, c.next_run_at, c.next_run_at + 1):
                            wins[n].append((c.cron_id, c.next_run_at))
                    barrier.wait(30)
            except BaseException as exc:  # reported below
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=scheduler, args=(n,)) for n in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        won = sorted(w for per in wins for w in per)
        assert won == sorted((f"c{i}", tick + 1.25) for i in range(crons) for tick in range(ticks))
        assert all(c.next_run_at == ticks + 1.25 for c in stores[0].search_crons(limit=crons))
    finally:
        for s in stores:
            s.close()


def test_concurrent_patches_keep_every_change(pg_url: str) -> None:
    """Patches lock the assistant row: none is lost, and versions stay consecutive."""
    stores = [open_store(pg_url, auto_migrate=True) for _ in range(2)]
    try:
        from resources_contract import assistant

        stores[0].put_assistant(assistant("a1"))
        per, errors = 10, []

        def patcher(n: int) -> None:
            try:
                for i in range(per):
                    stores[n].patch_assistant("a1", metadata={f"s{n}-{i}": i})
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=patcher, args=(n,)) for n in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        final = stores[0].get_assistant("a1")
        assert final is not None and final.version == 2 * per + 1
        assert len(final.metadata) == 2 * per
        versions = stores[0].list_assistant_versions("a1", limit=100)
        assert [v.version for v in versions] == list(range(2 * per + 1, 0, -1))
    finally:
        for s in stores:
            s.close()
