"""Assistants: a graph with a configuration, and every version of it.

Every change (:meth:`AssistantStore.patch_assistant`) stores a new numbered version holding
the whole record; one version is the current one
(:meth:`AssistantStore.set_latest_assistant_version` can go back to an older one). Patches
lock the row, so concurrent patches queue instead of losing each other's changes, and
versions stay consecutive.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from treadle.store.access import Access
from treadle.store.connector import Connector, Row, Tx
from treadle.store.encryption import AtRest
from treadle.store.records import Search, create, dump_json, load_json, merge_metadata, patch, scoped

__all__ = ["ASSISTANT_SORT", "Assistant", "AssistantStore", "patch_assistant_record"]

ASSISTANT_SORT = ("assistant_id", "graph_id", "name", "created_at", "updated_at")


@dataclass(slots=True)
class Assistant:
    assistant_id: str
    graph_id: str
    config: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    description: str | None = None
    version: int = 1  # set by the store
    created_at: float = 0.0  # set by the store; a version's: when it was made
    updated_at: float = 0.0  # set by the store; a version's: equals its created_at


def patch_assistant_record(
    current: Assistant,
    *,
    graph_id: str | None,
    config: dict[str, Any] | None,
    context: dict[str, Any] | None,
    metadata: dict[str, Any] | None,
    name: str | None,
    description: str | None,
) -> Assistant:
    """The record :meth:`AssistantStore.patch_assistant` stores."""
    return dataclasses.replace(
        current,
        graph_id=current.graph_id if graph_id is None else graph_id,
        config=current.config if config is None else config,
        context=current.context if context is None else context,
        metadata=merge_metadata(current.metadata, metadata),
        name=current.name if name is None else name,
        description=current.description if description is None else description,
    )


def _assistant(row: Sequence[Any], at: AtRest) -> Assistant:
    return Assistant(row[0], row[1], load_json(row[2]), load_json(row[3]),
                     at.open_metadata(load_json(row[4]), "assistant"),
                     row[5], row[6], row[7], row[8], row[9])


def _fields(a: Assistant, at: AtRest) -> dict[str, Any]:
    return {"assistant_id": a.assistant_id, "graph_id": a.graph_id,
            "config": dump_json(a.config), "context": dump_json(a.context),
            "metadata": dump_json(at.seal_metadata(a.metadata, "assistant")), "name": a.name,
            "description": a.description}


class AssistantStore:
    """Assistants and their versions. Every method is one short transaction."""

    db: Connector
    at_rest: AtRest

    def put_assistant(self, a: Assistant, *, if_exists: str = "raise") -> Assistant:
        """Create ``a`` as version 1 (the store sets version and times); return it.

        When the id exists: ``raise`` raises :class:`~treadle.errors.ConflictError`,
        ``do_nothing`` returns the existing assistant unchanged."""
        key = {"assistant_id": a.assistant_id}
        row = create(
            self.db, f"creating assistant {a.assistant_id}", "assistant_insert",
            _fields(a, self.at_rest), "assistant_get", key, if_exists, "assistant",
            then=lambda tx: tx.execute("assistant_snapshot", key))
        return _assistant(row, self.at_rest)

    def get_assistant(self, assistant_id: str, *, access: Access = None) -> Assistant | None:
        """The assistant, or None when it is missing or ``access`` excludes it."""
        row = self.db.one(f"reading assistant {assistant_id}",
                          *scoped(self.db, "assistant_get", {"assistant_id": assistant_id},
                                  self.at_rest.guard(access)))
        return _assistant(row, self.at_rest) if row else None

    def patch_assistant(
        self,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
        access: Access = None,
    ) -> Assistant | None:
        """Store a new version (highest version + 1) from the current record and the
        given fields, and make it current; None for an unknown id.

        ``metadata`` is merged into the current metadata (top-level keys); the other
        fields replace theirs when given."""
        key = {"assistant_id": assistant_id}

        def update(tx: Tx, row: Row) -> Row | None:
            new = patch_assistant_record(
                _assistant(row, self.at_rest), graph_id=graph_id, config=config, context=context,
                metadata=metadata, name=name, description=description)
            changed = tx.one("assistant_update", _fields(new, self.at_rest))
            tx.execute("assistant_snapshot", key)
            return changed

        row = patch(self.db, f"updating assistant {assistant_id}", "assistant_lock", key, update,
                    get="assistant_get", access=self.at_rest.guard(access))
        return _assistant(row, self.at_rest) if row else None

    def delete_assistant(self, assistant_id: str, *, access: Access = None) -> bool:
        """Delete the assistant and all its versions; False for an unknown id (or one
        ``access`` excludes)."""
        key = {"assistant_id": assistant_id}

        def delete(tx: Tx) -> int:
            if access is not None and tx.one(*scoped(self.db, "assistant_get", key,
                                                     self.at_rest.guard(access))) is None:
                return 0
            tx.execute("assistant_delete_versions", key)
            return tx.execute("assistant_delete", key)

        return self.db.transact(f"deleting assistant {assistant_id}", delete) == 1

    def _assistant_search(self, graph_id: str | None, name: str | None,
                          metadata: dict[str, Any] | None, access: Access = None) -> Search:
        self.at_rest.check_filterable(metadata or (), by_auth=False)
        return (Search(self.db).access(self.at_rest.guard(access))
                .match("assistant_where_graph_id", "graph_id", graph_id)
                .match("assistant_where_name", "name", name or None)
                .contains("resource_where_metadata", "metadata", metadata))

    def search_assistants(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str = "created_at",
        sort_order: str = "desc",
        access: Access = None,
    ) -> list[Assistant]:
        """Current records. ``name``: case-insensitive substring (SQLite folds ASCII
        letters only); ``metadata``: see :mod:`treadle.store.resources`."""
        rows = self._assistant_search(graph_id, name, metadata, access).sorted(
            "searching assistants", "assistant_search", ASSISTANT_SORT, sort_by, sort_order,
            limit, offset)
        return [_assistant(r, self.at_rest) for r in rows]

    def count_assistants(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        access: Access = None,
    ) -> int:
        return self._assistant_search(graph_id, name, metadata, access).count(
            "counting assistants", "assistant_count")

    def list_assistant_versions(
        self,
        assistant_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[Assistant]:
        """The assistant's stored versions, newest version first."""
        rows = (Search(self.db)
                .match("resource_where_assistant_id", "assistant_id", assistant_id)
                .contains("resource_where_metadata", "metadata", metadata)
                .page(f"listing versions of assistant {assistant_id}", "assistant_versions",
                      "assistant_versions_page", limit, offset))
        return [_assistant(r, self.at_rest) for r in rows]

    def set_latest_assistant_version(self, assistant_id: str, version: int) -> Assistant | None:
        """Make stored ``version`` the current record (``updated_at`` is now); None when
        the assistant or that version is unknown."""
        row = self.db.transact(
            f"restoring version {version} of assistant {assistant_id}",
            lambda tx: tx.one("assistant_restore",
                              {"assistant_id": assistant_id, "version": int(version)}))
        return _assistant(row, self.at_rest) if row else None
