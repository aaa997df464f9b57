"""Signed webhooks: how a receiver knows a delivery came from this deployment.

With ``TREADLE_WEBHOOK_SECRET`` set, every delivery carries
``X-Treadle-Signature: t=<unix seconds>,v1=<hex>``, where ``hex`` is the HMAC-SHA256 of
``<t>.<raw request body>`` keyed by the secret. A receiver recomputes it over the bytes it
received (before parsing the JSON), compares in constant time and refuses a timestamp
older than a few minutes (a replayed delivery). :func:`verify` does exactly that.
"""

from __future__ import annotations

import hashlib
import hmac
import time

__all__ = ["HEADER", "sign", "verify"]

HEADER = "X-Treadle-Signature"


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, *, tolerance: float = 300.0,
           now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).rpartition("v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))
