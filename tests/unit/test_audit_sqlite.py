"""The audit log on SQLite: the backend contract, plus the schema's triggers."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit_contract import AuditContract, entry
from treadle.store import open_store
from treadle.store.base import Store


class TestSqliteAudit(AuditContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/a.db", auto_migrate=True)
        try:
            yield s
        finally:
            s.close()


def test_another_connection_cannot_edit_the_file_without_dropping_triggers(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/a.db", auto_migrate=True)
    try:
        store.append_audit([entry(1)])
        conn = sqlite3.connect(tmp_path / "a.db")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE treadle_audit SET outcome = '500'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM treadle_audit")
        conn.close()
        assert store.verify_audit().ok
    finally:
        store.close()


def test_the_writer_retries_while_the_database_is_locked(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """A record queued while another process holds the write lock is stored once it is
    released; nothing is lost or written twice."""
    store = open_store(f"sqlite:///{tmp_path}/a.db?busy_timeout=0.05", auto_migrate=True)
    try:
        blocker = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        store.record_audit(entry(1))
        assert not store.flush_audit(0.5)  # still waiting for the lock
        blocker.execute("COMMIT")
        blocker.close()
        assert store.flush_audit(30)
        assert [r.resource_id for r in store.list_audit()] == ["th-1"]
        assert any("retrying" in r.getMessage() for r in caplog.records)
    finally:
        store.close()


def test_a_refused_record_is_logged_whole_and_the_rest_go_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="treadle.audit")
    store = open_store(f"sqlite:///{tmp_path}/a.db", auto_migrate=True)
    try:
        store.record_audit(entry(1, detail={"bad": float("nan")}))
        assert store.flush_audit(30)
        store.record_audit(entry(2))
        assert store.flush_audit(30)
        assert [r.resource_id for r in store.list_audit()] == ["th-2"]
        (lost,) = [r for r in caplog.records if r.levelno == logging.ERROR
                   and r.name == "treadle.audit"]
        assert "NOT stored" in lost.getMessage()
        assert lost.__dict__["audit"]["resource_id"] == "th-1"
        assert lost.__dict__["audit"]["stored"] is False
    finally:
        store.close()
