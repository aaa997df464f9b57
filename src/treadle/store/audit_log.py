"""The audit log: an append-only, hash-chained record of who did what.

Each record (:class:`AuditRecord`) gets the next number (``seq`` 1, 2, 3 ...), the
database's time, the hash of the record before it (``prev_hash``; :data:`GENESIS` for the
first) and its own ``hash``: sha256 over :func:`canonical` — a JSON array of its fields and
``prev_hash``. Changing, removing or inserting a record breaks the chain at that record,
which :meth:`AuditLogStore.verify_audit` finds. That makes the log tamper-*evident*, not
tamper-proof: someone who can write the database can recompute every hash after an edit;
keep a copy of the head (:meth:`AuditLogStore.audit_head`, or the JSON log lines) elsewhere
to catch that too.

Appends take turns across every process sharing the store (PostgreSQL: an advisory lock
held to the commit; SQLite: the write lock), so the chain stays one chain. The table also
refuses UPDATE and DELETE (triggers; migrations ``*_audit``).

Callers record through :meth:`AuditLogStore.record_audit`, which queues and returns at once
(:mod:`~treadle.store.audit_writer` appends in batches, in the background, and emits each
stored record as a JSON log line on the ``treadle.audit`` logger); the store's ``close``
writes what is queued.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from treadle.errors import InputError
from treadle.store.connector import Connector, Row, Tx

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditLogStore",
    "AuditRecord",
    "AuditVerdict",
    "canonical",
    "chain_hash",
]

#: The ``prev_hash`` of the first record.
GENESIS = "0" * 64
_PAGE = 1000  # records read per query while verifying
_MAX_LIST = 10_000


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What a caller records; the store numbers, times and chains it."""

    action: str  # e.g. "threads.create", "runs.success"
    actor: str = "anonymous"  # the user's identity ("anonymous" without auth)
    tenant: str | None = None
    resource: str | None = None  # e.g. "threads"
    resource_id: str | None = None
    request_id: str | None = None
    outcome: str = "ok"  # an HTTP status ("201"), "ok", "error:<code>", a run's status
    detail: dict[str, Any] = field(default_factory=dict)  # small, JSON, never a secret


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored record. ``detail`` is the JSON text that was hashed."""

    seq: int
    at: float  # Unix seconds, the database's clock
    actor: str
    tenant: str | None
    action: str
    resource: str | None
    resource_id: str | None
    request_id: str | None
    outcome: str
    detail: str
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (``detail`` as an object)."""
        try:
            detail = json.loads(self.detail)
        except ValueError:
            detail = self.detail
        return {"seq": self.seq, "at": self.at, "actor": self.actor, "tenant": self.tenant,
                "action": self.action, "resource": self.resource,
                "resource_id": self.resource_id, "request_id": self.request_id,
                "outcome": self.outcome, "detail": detail, "prev_hash": self.prev_hash,
                "hash": self.hash}


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    """What :meth:`AuditLogStore.verify_audit` found."""

    ok: bool
    records: int  # how many records were checked
    head_seq: int  # the last good record (0: none)
    head_hash: str  # its hash (GENESIS: none)
    broken_seq: int | None = None  # the first record that breaks the chain
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "head_seq": self.head_seq,
                "head_hash": self.head_hash, "broken_seq": self.broken_seq,
                "reason": self.reason}


def dump_detail(detail: dict[str, Any]) -> str:
    """``detail`` as canonical JSON text (sorted keys, no spaces, no NaN)."""
    try:
        return json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=str)
    except ValueError as exc:
        raise InputError(f"an audit record's detail must be plain JSON: {exc}") from exc


def canonical(seq: int, at: float, actor: str, tenant: str | None, action: str,
              resource: str | None, resource_id: str | None, request_id: str | None,
              outcome: str, detail: str, prev_hash: str) -> bytes:
    """The bytes a record's hash covers: a JSON array of its fields (``at`` as Python's
    shortest round-trip repr, which both databases store exactly as a double) and the
    previous record's hash."""
    return json.dumps([seq, repr(float(at)), actor, tenant, action, resource, resource_id,
                       request_id, outcome, detail, prev_hash],
                      ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def chain_hash(seq: int, at: float, actor: str, tenant: str | None, action: str,
               resource: str | None, resource_id: str | None, request_id: str | None,
               outcome: str, detail: str, prev_hash: str) -> str:
    """sha256 (hex) of :func:`canonical`."""
    return hashlib.sha256(canonical(seq, at, actor, tenant, action, resource, resource_id,
                                    request_id, outcome, detail, prev_hash)).hexdigest()


def _record(row: Row) -> AuditRecord:
    return AuditRecord(int(row[0]), float(row[1]), row[2], row[3], row[4], row[5], row[6],
                       row[7], row[8], row[9], row[10], row[11])


def _recomputed(r: AuditRecord) -> str:
    return chain_hash(r.seq, r.at, r.actor, r.tenant, r.action, r.resource, r.resource_id,
                      r.request_id, r.outcome, r.detail, r.prev_hash)


def _check(kind: str, value: str | None) -> None:
    if value is not None and not isinstance(value, str):
        raise InputError(f"an audit record's {kind} must be text, not {type(value).__name__}")


class AuditLogStore:
    """The audit log, over ``self.db``."""

    db: Connector
    _audit_writer: Any = None
    _audit_lock = threading.Lock()

    # --- appending ------------------------------------------------------------------------
    def append_audit(self, entries: Sequence[AuditEntry]) -> list[AuditRecord]:
        """Append ``entries`` in order, in one transaction; the stored records. Appends of
        every process sharing the store take turns, so the chain stays one chain."""
        if not entries:
            return []
        for e in entries:
            if not e.action or not isinstance(e.action, str):
                raise InputError("an audit record needs an action (e.g. 'threads.create')")
            for kind, value in (("actor", e.actor), ("tenant", e.tenant),
                                ("resource", e.resource), ("resource_id", e.resource_id),
                                ("request_id", e.request_id), ("outcome", e.outcome)):
                _check(kind, value)
        details = [dump_detail(e.detail) for e in entries]

        def append(tx: Tx) -> list[AuditRecord]:
            tx.execute("audit_lock")
            head = tx.one("audit_head")
            seq, prev = (int(head[0]), str(head[1])) if head else (0, GENESIS)
            clock = tx.one("clock")
            assert clock is not None
            at = float(clock[0])
            if not math.isfinite(at):  # pragma: no cover - a database's clock is finite
                raise InputError("the database's clock is not a number")
            out: list[AuditRecord] = []
            for e, detail in zip(entries, details, strict=True):
                seq += 1
                digest = chain_hash(seq, at, e.actor, e.tenant, e.action, e.resource,
                                    e.resource_id, e.request_id, e.outcome, detail, prev)
                out.append(AuditRecord(seq, at, e.actor, e.tenant, e.action, e.resource,
                                       e.resource_id, e.request_id, e.outcome, detail, prev,
                                       digest))
                prev = digest
            tx.many("audit_insert", [
                (r.seq, r.at, r.actor, r.tenant, r.action, r.resource, r.resource_id,
                 r.request_id, r.outcome, r.detail, r.prev_hash, r.hash) for r in out])
            return out

        return self.db.transact(f"appending {len(entries)} audit record(s)", append)

    def record_audit(self, entry: AuditEntry) -> None:
        """Queue ``entry``; it is appended in the background, batched with others (see
        :mod:`~treadle.store.audit_writer`). Returns at once."""
        self._audit().put(entry)

    def flush_audit(self, timeout: float = 10.0) -> bool:
        """Wait until every entry queued before now is stored (or ``timeout``); whether it
        was."""
        writer = self._audit_writer
        return True if writer is None else bool(writer.flush(timeout))

    def close_audit(self) -> None:
        """Store what is queued and stop the background writer (the store's close)."""
        with AuditLogStore._audit_lock:
            writer, self._audit_writer = self._audit_writer, None
        if writer is not None:
            writer.close()

    def _audit(self) -> Any:
        writer = self._audit_writer
        if writer is None:
            with AuditLogStore._audit_lock:
                writer = self._audit_writer
                if writer is None:
                    from treadle.store.audit_writer import AuditWriter

                    writer = self._audit_writer = AuditWriter(self.append_audit,
                                                              name=f"treadle-audit:{id(self):x}")
        return writer

    # --- reading ----------------------------------------------------------------------------
    def list_audit(self, *, after_seq: int = 0, limit: int = 100, actor: str | None = None,
                   action: str | None = None, resource_id: str | None = None,
                   tenant: str | None = None, newest: bool = False) -> list[AuditRecord]:
        """Records matching every filter given, oldest first after ``after_seq``; with
        ``newest``, the newest ``limit`` before ``after_seq`` (0: the end), newest first."""
        if not 1 <= limit <= _MAX_LIST:
            raise InputError(f"limit must be between 1 and {_MAX_LIST}, not {limit}")
        if after_seq < 0:
            raise InputError(f"after_seq must be 0 or more, not {after_seq}")
        params = {"actor": actor, "action": action, "resource_id": resource_id,
                  "tenant": tenant, "limit": limit}
        if newest:
            rows = self.db.all("reading the audit log", "audit_list_newest",
                               {**params, "before_seq": after_seq or 2**62})
        else:
            rows = self.db.all("reading the audit log", "audit_list",
                               {**params, "after_seq": after_seq})
        return [_record(r) for r in rows]

    def audit_head(self) -> tuple[int, str]:
        """The last record's seq and hash ((0, GENESIS) for an empty log): export it
        somewhere an attacker of the database cannot write, to detect a rewritten chain."""
        row = self.db.one("reading the audit log's head", "audit_head")
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    def verify_audit(self, anchor: tuple[int, str] | None = None) -> AuditVerdict:
        """Walk the chain from the first record: every seq follows the one before, carries
        its hash and hashes to its own. The first record that does not is ``broken_seq``.
        ``anchor``: a (seq, hash) head exported earlier, which the chain must still hold
        (catches a chain rewritten whole, or cut short, since)."""
        seq, prev, count = 0, GENESIS, 0
        while True:
            page = self.list_audit(after_seq=seq, limit=_PAGE)
            for r in page:
                reason = None
                if anchor is not None and r.seq == anchor[0] and r.hash != anchor[1]:
                    return AuditVerdict(False, count, seq, prev, broken_seq=r.seq,
                                        reason="its hash is not the one exported for it "
                                               "(the chain was rewritten)")
                if r.seq != seq + 1:
                    reason = f"expected seq {seq + 1} after {seq}, found {r.seq} (records removed)"
                elif r.prev_hash != prev:
                    reason = "its prev_hash is not the hash of the record before it"
                elif _recomputed(r) != r.hash:
                    reason = "its contents do not match its hash (the record was changed)"
                if reason is not None:
                    return AuditVerdict(False, count, seq, prev, broken_seq=seq + 1
                                        if r.seq != seq + 1 else r.seq, reason=reason)
                seq, prev, count = r.seq, r.hash, count + 1
            if len(page) < _PAGE:
                if anchor is not None and anchor[0] > seq:
                    return AuditVerdict(False, count, seq, prev, broken_seq=seq + 1,
                                        reason=f"the chain ends before seq {anchor[0]}, "
                                               "whose hash was exported (records removed)")
                return AuditVerdict(True, count, seq, prev)
