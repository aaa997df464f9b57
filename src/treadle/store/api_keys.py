"""API keys: the built-in auth's credentials (``treadle keys``, :mod:`treadle.auth.builtin`).

A key belongs to one tenant and carries one role (:data:`ROLES`). It is shown once, when it
is created, as ``tdl_<key_id>_<secret>``: ``key_id`` finds its row, ``secret`` is 32 random
bytes (URL-safe base64). The store keeps only the SHA-256 of the secret, so a copy of the
database does not hold a usable key. A plain hash, not a slow password hash (bcrypt, scrypt),
is enough because the secret is 256 random bits: there is no dictionary to try, and nothing to
slow down. Verification compares digests in constant time.

Revoking a key is immediate (every request verifies against the table) and kept: the row
stays, with its revocation time, so ``treadle keys list`` shows what existed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from treadle.errors import ConflictError, InputError
from treadle.store.connector import Connector

__all__ = ["KEY_PREFIX", "ROLES", "TENANT_PATTERN", "ApiKey", "ApiKeyStore", "check_role",
           "check_tenant"]

#: The built-in roles, weakest first; each includes the ones before it.
ROLES = ("viewer", "runner", "approver", "admin")
#: Every key starts with this, so a leaked one is easy to recognise (and to scan for).
KEY_PREFIX = "tdl_"
#: A tenant id: it becomes the first label of the tenant's store namespaces, so no dots.
TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-:@+]{0,127}")
_KEY = re.compile(r"tdl_([0-9a-f]{16})_([A-Za-z0-9_\-]{43})")
# Compared against when the key id is unknown, so that answer takes as long as a wrong secret.
_NO_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key as listed: never its secret or its hash."""

    key_id: str
    tenant_id: str
    role: str
    name: str | None
    created_at: float  # Unix seconds, the database's clock
    revoked_at: float | None  # None while the key is valid

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def check_tenant(tenant_id: object) -> str:
    """``tenant_id`` if it is a valid tenant id, else InputError saying what one looks like."""
    if not isinstance(tenant_id, str) or not TENANT_PATTERN.fullmatch(tenant_id):
        raise InputError(
            f"invalid tenant {tenant_id!r}: use 1 to 128 letters, digits and _ - : @ + "
            "(starting with a letter or digit; no dots)")
    return tenant_id


def check_role(role: str) -> str:
    """``role`` if it is a built-in role, else InputError naming the roles."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r} (use one of {', '.join(ROLES)})")
    return role


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _key(row: Sequence[Any]) -> ApiKey:
    return ApiKey(row[0], row[1], row[2], row[3], float(row[4]),
                  None if row[5] is None else float(row[5]))


class ApiKeyStore:
    """API keys, over ``self.db``. Every method is one short statement."""

    db: Connector

    def create_api_key(self, tenant_id: str, role: str, name: str | None = None
                       ) -> tuple[ApiKey, str]:
        """A new key for ``tenant_id`` with ``role``: its record, and the key itself (the
        only time it is available). InputError for an unknown role or a bad tenant id."""
        check_tenant(tenant_id)
        check_role(role)
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        row = self.db.one(f"creating an API key for tenant {tenant_id}", "api_key_insert", {
            "key_id": key_id, "tenant_id": tenant_id, "role": role, "name": name or None,
            "hash": _digest(secret)})
        if row is None:  # 64 random bits collided: vanishingly rare; say so, do not overwrite
            raise ConflictError(f"API key id {key_id} exists already; create the key again")
        return _key(row), f"{KEY_PREFIX}{key_id}_{secret}"

    def list_api_keys(self, tenant_id: str | None = None) -> list[ApiKey]:
        """Every key (or ``tenant_id``'s), revoked ones included, oldest first."""
        rows = self.db.all("listing API keys", "api_key_list", {"tenant_id": tenant_id})
        return [_key(r) for r in rows]

    def revoke_api_key(self, key_id: str) -> ApiKey | None:
        """Revoke ``key_id`` (at once: it verifies no more); None for an unknown id.
        Revoking a revoked key changes nothing."""
        row = self.db.one(f"revoking API key {key_id}", "api_key_revoke", {"key_id": key_id})
        return _key(row) if row else None

    def verify_api_key(self, presented: str) -> ApiKey | None:
        """The valid (not revoked) key ``presented`` is, or None: a malformed, unknown,
        revoked or wrong key alike."""
        match = _KEY.fullmatch(presented.strip()) if isinstance(presented, str) else None
        if match is None:
            return None
        key_id, secret = match.groups()
        row = self.db.one("verifying an API key", "api_key_hash", {"key_id": key_id})
        good = hmac.compare_digest(row[0] if row else _NO_HASH, _digest(secret))
        if row is None or not good:
            return None
        key = _key(row[1:])
        return None if key.revoked else key
