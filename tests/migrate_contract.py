"""Migration phases and TREADLE_AUTO_MIGRATE, for every backend.

A backend's test module subclasses :class:`MigrateContract` and provides ``url`` (a fresh,
empty store) and ``backend`` (``"sqlite"`` or ``"postgres"``). Two fake migrations follow
the real ones: a *post* one, then a *pre* one, as a release that drops an old column
(post) and a later one that adds a table (pre) would.
"""

from __future__ import annotations

import pytest

from treadle.errors import ConfigError, SchemaError
from treadle.store import open_store
from treadle.store.migrate import Migration, load_migrations


class MigrateContract:
    @pytest.fixture
    def known(self, backend: str, monkeypatch: pytest.MonkeyPatch) -> list[Migration]:
        real = load_migrations(backend)
        n = len(real)
        fake = [
            Migration(n + 1, f"{n + 1:04d}_drop_old.post.sql", "post",
                      "CREATE TABLE IF NOT EXISTS treadle_test_post (x INTEGER)"),
            Migration(n + 2, f"{n + 2:04d}_add_new.pre.sql", "pre",
                      "CREATE TABLE IF NOT EXISTS treadle_test_pre (x INTEGER)"),
        ]
        known: list[Migration] = [*real, *fake]
        # The store's migrations are written once, for every backend.
        monkeypatch.setattr("treadle.store.migrate.load_migrations", lambda _backend: known)
        return known

    def test_pre_applies_pre_migrations_only(self, url: str, known: list[Migration]) -> None:
        with open_store(url, auto_migrate=False) as store:
            applied = store.migrate("pre")
            assert applied == [m.name for m in known if m.phase == "pre"]
            assert known[-2].name not in applied  # the post one waits
            store.check_schema()  # every pre migration is there: pods may start
            assert store.migrate("pre") == []
            assert store.migrate("post") == [known[-2].name]
            assert store.migrate("all") == []

    def test_post_is_refused_while_a_pre_migration_is_missing(
        self, url: str, known: list[Migration]
    ) -> None:
        with open_store(url, auto_migrate=False) as store:
            with pytest.raises(SchemaError, match=r"treadle migrate --phase pre"):
                store.migrate("post")
            assert store.schema_version() == 0  # nothing applied

    def test_all_applies_everything_in_order(self, url: str, known: list[Migration]) -> None:
        with open_store(url, auto_migrate=False) as store:
            assert store.migrate() == [m.name for m in known]

    def test_unknown_phase(self, url: str, known: list[Migration]) -> None:
        with open_store(url, auto_migrate=False) as store:
            with pytest.raises(ConfigError, match="pre, post or all"):
                store.migrate("later")

    def test_auto_migrate_off_refuses_a_missing_pre_migration(
        self, url: str, known: list[Migration], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TREADLE_AUTO_MIGRATE", "false")
        with pytest.raises(SchemaError) as err:
            open_store(url)
        message = str(err.value)
        assert "\n" not in message
        assert "no treadle schema" in message and "treadle migrate --phase pre" in message
        with open_store(url, auto_migrate=False) as store:
            assert store.schema_version() == 0  # refusing migrated nothing
            store.migrate("all")
        # A later pre migration is missing (the image is newer than the Job that ran).
        with open_store(url, auto_migrate=False) as store:
            self._forget(store, known[-1].version)
        with pytest.raises(SchemaError, match=known[-1].name):
            open_store(url)
        with open_store(url, auto_migrate=False) as store:
            assert store.migrate("pre") == [known[-1].name]
        with open_store(url) as store:  # starts; migrates nothing
            assert store.schema_version() == known[-1].version

    def test_auto_migrate_off_does_not_need_post_migrations(
        self, url: str, known: list[Migration], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with open_store(url, auto_migrate=False) as store:
            store.migrate("pre")
        monkeypatch.setenv("TREADLE_AUTO_MIGRATE", "false")
        with open_store(url) as store:  # the rollout runs before the post migrations
            assert known[-2].version not in self._applied(store)

    def test_old_code_runs_on_newer_pre_migrations_not_post(
        self, url: str, known: list[Migration], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        with open_store(url, auto_migrate=False) as store:
            store.migrate("all")
            self._record(store, known[-1].version + 1, f"{known[-1].version + 1:04d}_x.pre.sql")
        monkeypatch.setenv("TREADLE_AUTO_MIGRATE", "false")
        with open_store(url):  # an old pod during a rollout: the new pre migration is additive
            pass
        with open_store(url, auto_migrate=False) as store:
            self._record(store, known[-1].version + 2, f"{known[-1].version + 2:04d}_y.post.sql")
        with pytest.raises(SchemaError, match="upgrade treadle"):
            open_store(url)
        with pytest.raises(SchemaError, match="upgrade treadle"):
            open_store(url, auto_migrate=True)  # and migrating is refused, as before

    def test_auto_migrate_on_applies_everything(self, url: str, known: list[Migration]) -> None:
        with open_store(url) as store:
            assert set(self._applied(store)) == {m.version for m in known}

    # --- backend access -------------------------------------------------------------------
    def _applied(self, store: object) -> list[int]:
        raise NotImplementedError

    def _forget(self, store: object, version: int) -> None:
        raise NotImplementedError

    def _record(self, store: object, version: int, name: str) -> None:
        raise NotImplementedError
