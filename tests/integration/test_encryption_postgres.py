"""Encryption at rest on PostgreSQL: the same store code seals and opens on both drivers,
so the checkpoint, queue and resource contracts pass on an encrypted PostgreSQL store, and
plaintext rows are refused once encryption is on."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from checkpoint_contract import CheckpointContract
from queue_contract import QueueContract
from resources_contract import ResourcesContract
from treadle.config import get_settings
from treadle.errors import EncryptionError, InputError
from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.items import ItemWrite
from treadle.store.thread_records import Thread

pytestmark = pytest.mark.postgres

KEYS = "k1:" + base64.b64encode(b"p" * 32).decode()


def _open(url: str, **settings: Any) -> Store:
    return open_store(url, settings=get_settings(**settings))


@pytest.fixture
def encrypted(pg_url: str) -> Iterator[Store]:
    s = _open(pg_url, encryption_keys=KEYS)
    try:
        yield s
    finally:
        s.close()


class TestEncryptedPostgresCheckpoints(CheckpointContract):
    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url

    @pytest.fixture
    def store(self, encrypted: Store) -> Store:
        return encrypted


class TestEncryptedPostgresQueue(QueueContract):
    @pytest.fixture
    def store(self, encrypted: Store) -> Store:
        return encrypted


class TestEncryptedPostgresResources(ResourcesContract):
    @pytest.fixture
    def store(self, encrypted: Store) -> Store:
        return encrypted

    def test_search_threads_filters(self, store: Store) -> None:
        """Thread values are encrypted: a values filter is refused, never silently empty."""
        store.put_thread(Thread("t1", {"k": 1}, values={"v": 1}))
        assert [t.thread_id for t in store.search_threads(metadata={"k": 1})] == ["t1"]
        with pytest.raises(InputError, match="cannot be searched by values"):
            store.search_threads(values={"v": 1})


def test_plaintext_rows_are_refused(pg_url: str) -> None:
    plain = _open(pg_url)
    try:
        plain.put_thread(Thread("t1", values={"v": "legacy"}))
        plain.write_items([ItemWrite.put(("ns",), "k", {"v": "legacy"})])
    finally:
        plain.close()
    store = _open(pg_url, encryption_keys=KEYS)
    try:
        with pytest.raises(EncryptionError, match="not encrypted while encryption at rest is on"):
            store.get_thread("t1")
        with pytest.raises(EncryptionError, match="not encrypted while encryption at rest is on"):
            store.get_items([(("ns",), "k")])
    finally:
        store.close()
