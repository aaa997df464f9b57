"""Idempotent run creation over HTTP: the ``Idempotency-Key`` request header.

A client that creates a run with ``Idempotency-Key: <key>`` and sends the same request
again (it timed out, the API process died before it answered) gets the first run back
instead of a second one: ``POST /threads/{id}/runs`` answers with it, ``/stream`` and
``/wait`` join it. The key is stored with the run, in the transaction that queues it
(``treadle.store.queue.NewRun.idempotency_key``), so a retry finds it whichever replica
serves it, and concurrent retries queue one run. The same key with a different request
is refused (422), as the IETF Idempotency-Key draft says.

Keys are scoped: a thread's runs per thread (one key may name a run on each thread),
stateless runs together. A key is honoured while its run exists (deleting the run frees it).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

from fastapi import HTTPException

from treadle.server.schemas import RunCreate

__all__ = ["HEADER", "MAX_KEY_LENGTH", "RunKey", "run_key"]

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
# Namespace of the thread ids of keyed stateless runs (a retry reuses the first one's).
_STATELESS = uuid.UUID("5f0c7e52-3a0b-4c43-9e55-8f1d2a6b7c01")


@dataclass(frozen=True, slots=True)
class RunKey:
    """A create request's key, as stored: scoped, with the digest of the request."""

    key: str  # scoped, the store's unique key
    request_hash: str
    header: str  # as the client sent it

    def refused(self, run_id: str) -> HTTPException:
        """The 422 for this key reused for another request than the one that made run_id."""
        return HTTPException(422, f"{HEADER} {self.header!r} was used for a different request "
                                  f"(run {run_id}): send that request again to retry it, or "
                                  "use a new key for a new run")

    def stateless_thread_id(self) -> str:
        """The thread id of a keyed stateless run: the same for every retry, so a retry
        leaves no stray thread behind."""
        return str(uuid.uuid5(_STATELESS, self.key))


def run_key(header: str | None, body: RunCreate, thread_id: str | None, *, stateless: bool,
            stream: bool, index: int | None = None) -> RunKey | None:
    """The stored key of a create request (None without the header); 422 for a bad key.

    ``index``: the item's position in ``/runs/batch`` (each item gets its own key)."""
    if header is None:
        return None
    if not header.strip() or len(header) > MAX_KEY_LENGTH:
        raise HTTPException(422, f"{HEADER} must be 1 to {MAX_KEY_LENGTH} characters")
    scope = "runs" if stateless or thread_id is None else f"thread:{thread_id}"
    key = f"{scope}:{header}" if index is None else f"{scope}:{header}#{index}"
    request = {"scope": scope, "stream": stream, "body": body.model_dump(mode="json")}
    digest = hashlib.sha256(
        json.dumps(request, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()
    return RunKey(key, digest, header)
