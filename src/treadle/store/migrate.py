"""Versioned migrations: numbered SQL files per backend, tracked in ``treadle_migrations``.

File names are ``NNNN_name[.pre|.post].sql``. *pre* migrations only add things and may
run before new code rolls out; *post* ones (dropping what old code still reads) run
after the old pods are gone. Applying takes a lock (PostgreSQL advisory lock, SQLite
write lock), so concurrent ``treadle migrate`` runs apply each migration once. A
database whose schema is newer than this code is refused with both versions.

A rolling upgrade is therefore ``treadle migrate --phase pre`` (a Job), the rollout, then
``treadle migrate --phase post``. Processes started with ``TREADLE_AUTO_MIGRATE=false``
do not migrate; they :func:`check` that every pre migration they know is applied, and
tolerate pre migrations newer than themselves (an old pod during the rollout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from treadle.errors import ConfigError, MigrationsPendingError, SchemaError
from treadle.store.urls import redact

if TYPE_CHECKING:
    from treadle.store.connector import Connector, Tx

__all__ = [
    "PHASES",
    "Migration",
    "applied_migrations",
    "check",
    "check_schema",
    "load_migrations",
    "migrate",
    "pending",
    "schema_version",
    "select",
]

#: ``treadle migrate --phase``: ``pre`` before a rollout, ``post`` after it, ``all`` both.
PHASES = ("pre", "post", "all")

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(pre|post))?\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    phase: str  # "pre" or "post"
    sql: str


def load_migrations(backend: str) -> list[Migration]:
    folder = resources.files("treadle.store") / "migrations" / backend
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if not match:
            continue
        found.append(
            Migration(
                version=int(match.group(1)),
                name=entry.name,
                phase=match.group(3) or "pre",
                sql=entry.read_text(encoding="utf-8"),
            )
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"{backend} migrations are not numbered 1..n: {versions}")
    return found


def pending(applied: set[int], known: list[Migration], *, url: str) -> list[Migration]:
    """Migrations still to apply; refuse a database newer than this code."""
    newest_known = known[-1].version if known else 0
    newest_applied = max(applied, default=0)
    if newest_applied > newest_known:
        raise SchemaError(
            f"the database at {url} has schema version {newest_applied} but this treadle "
            f"knows versions up to {newest_known}; upgrade treadle before using this store"
        )
    return [m for m in known if m.version not in applied]


def select(applied: set[int], known: list[Migration], phase: str, *, url: str) -> list[Migration]:
    """The migrations ``treadle migrate --phase PHASE`` applies, in version order.

    ``pre``: the pending pre migrations (pending post ones wait for the end of the rollout).
    ``post``: every pending migration, refused while a pre one is pending (the rollout it
    precedes has not happened). ``all``: every pending migration.
    """
    if phase not in PHASES:
        raise ConfigError(f"unknown migration phase {phase!r}: use pre, post or all")
    todo = pending(applied, known, url=url)
    if phase == "pre":
        return [m for m in todo if m.phase == "pre"]
    if phase == "post":
        missing = [m.name for m in todo if m.phase == "pre"]
        if missing:
            raise SchemaError(
                f"the database at {url} lacks pre migrations {', '.join(missing)}: run "
                "`treadle migrate --phase pre` and roll out before `--phase post`"
            )
    return todo


def check(applied: dict[int, str], known: list[Migration], *, url: str) -> None:
    """Refuse a schema this code cannot run on without migrating (``applied``: version ->
    file name): a pre migration it knows is missing, or a post migration newer than it."""
    versions = {m.version for m in known}
    newer_post = sorted(n for v, n in applied.items() if v not in versions and ".post." in n)
    if newer_post:
        raise SchemaError(
            f"the database at {url} has post migrations newer than this treadle "
            f"({', '.join(newer_post)}); upgrade treadle before using this store"
        )
    missing = [m.name for m in known if m.phase == "pre" and m.version not in applied]
    if missing:
        lacks = f"lacks migrations {', '.join(missing)}" if applied else "has no treadle schema"
        raise MigrationsPendingError(
            f"the database at {url} {lacks} and TREADLE_AUTO_MIGRATE is off: "
            "run `treadle migrate --phase pre` first"
        )


# --- over the connector (the store's migrate / check_schema / schema_version) ---------------


def migrate(db: Connector, phase: str = "all") -> list[str]:
    """Apply the pending migrations of ``phase`` in one transaction, under the lock that
    makes concurrent migrations queue; return the names applied."""
    known = load_migrations(db.dialect)

    def run(tx: Tx) -> list[str]:
        tx.execute("migrations_create")
        applied = {r[0] for r in tx.all("migrations_applied")}
        todo = select(applied, known, phase, url=redact(db.url))
        for m in todo:
            tx.script(m.sql)
            tx.execute("migration_record", (m.version, m.name))
        return [m.name for m in todo]

    return db.migrating("migrating", run)


def applied_migrations(db: Connector) -> dict[int, str] | None:
    """The applied migrations (version -> file name); None without a migrations table."""
    if db.one("reading the applied migrations", "migrations_table") is None:
        return None
    return {r[0]: r[1] for r in db.all("reading the applied migrations", "migrations_applied")}


def check_schema(db: Connector) -> None:
    """:func:`check` the database's applied migrations."""
    check(applied_migrations(db) or {}, load_migrations(db.dialect), url=redact(db.url))


def schema_version(db: Connector) -> int:
    """The newest migration applied (0 for an empty database)."""
    if applied_migrations(db) is None:
        return 0
    row = db.one("reading the schema version", "schema_version")
    return int(row[0]) if row else 0
