"""Versioned migrations: numbered SQL files per backend, tracked in ``treadle_migrations``.

File names are ``NNNN_name[.pre|.post].sql``. *pre* migrations only add things and may
run before new code rolls out; *post* ones (dropping what old code still reads) run
after the old pods are gone. Applying takes a lock (PostgreSQL advisory lock, SQLite
write lock), so concurrent ``treadle migrate`` runs apply each migration once. A
database whose schema is newer than this code is refused with both versions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from treadle.errors import SchemaError

__all__ = ["Migration", "load_migrations", "pending"]

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
