"""The LangGraph Platform API resources: assistants (with versions), threads, crons.

They live beside the checkpoints and the run queue, in the same database, written once
over the connector (:mod:`treadle.store.connector`): :mod:`~treadle.store.assistant_records`,
:mod:`~treadle.store.thread_records`, :mod:`~treadle.store.cron_records`, sharing
:mod:`~treadle.store.records`. Values are plain JSON (dicts, lists, scalars); times are
Unix seconds (float) from the *database's* clock.

Every method is one short transaction. ``sort_by`` / ``sort_order`` / ``if_exists`` /
thread statuses outside their allowed values raise :class:`~treadle.errors.InputError`;
database failures raise :class:`~treadle.errors.StoreError`. Searches order by ``sort_by``
(empty values last; text by code point), then by creation order in the same direction.

Filters
    ``metadata`` (and a thread's ``values``) filters match rows whose JSON object has every
    given top-level key with an equal value (values may be nested JSON; numbers compare
    by value, so ``1`` equals ``1.0`` at the top level). An empty filter matches every row.
"""

from __future__ import annotations

from treadle.store.assistant_records import AssistantStore
from treadle.store.cron_records import CronStore
from treadle.store.thread_records import ThreadStore

__all__ = ["ResourceStore"]


class ResourceStore(AssistantStore, ThreadStore, CronStore):
    """Assistants, threads and crons, over ``self.db``."""
