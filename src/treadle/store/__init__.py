"""treadle's store: one database (SQLite embedded, PostgreSQL for clusters) behind one protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING

from treadle.store.base import Store
from treadle.store.drivers import connect

if TYPE_CHECKING:
    from treadle.config import Settings

__all__ = ["Store", "open_store"]


def open_store(url: str, *, linger: float | None = None, auto_migrate: bool | None = None,
               settings: Settings | None = None) -> Store:
    """Open the store at ``url`` (``sqlite:///path`` or ``postgresql://...``).

    ``auto_migrate`` None follows ``settings.auto_migrate`` (``TREADLE_AUTO_MIGRATE``):
    apply pending migrations, or (off) refuse a schema missing a pre migration
    (:meth:`Store.check_schema`). True migrates; False opens the store as it is
    (``treadle migrate`` itself). ``linger`` None follows ``settings.write_linger_ms``;
    a PostgreSQL store connects within ``settings.connect_timeout``.

    treadle's own callers (``treadle.compile``, the CLI, the server, workers) pass the
    settings they read once; without them (``treadle.open_store(url)`` in a program)
    they are read from the ``TREADLE_*`` environment here.
    """
    if settings is None:
        from treadle.config import get_settings

        settings = get_settings()
    if linger is None:
        linger = settings.write_linger_ms / 1000
    migrate = settings.auto_migrate if auto_migrate is None else auto_migrate
    from treadle.store import encryption

    at_rest = encryption.build(settings)
    store = Store(connect(url, connect_timeout=settings.connect_timeout), linger=linger,
                  at_rest=at_rest)
    try:
        if migrate:
            store.migrate()
        elif auto_migrate is None:
            store.check_schema()
    except BaseException:
        store.close()
        raise
    return store
