"""Per-tenant keys chosen from ``ctx.metadata["tenant"]``, which ``@encryption.context``
derives from the authenticated user (as LangGraph's custom encryption guide does). Every
handler call is appended to the JSON-lines file ``$TENANT_CIPHER_CALLS``
(tests/e2e/test_encryption_tenants.py)."""

from __future__ import annotations

import json
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from langgraph_sdk import Encryption, EncryptionContext

encryption = Encryption()

KEYS = {"acme": b"A" * 32, "zeta": b"Z" * 32, None: b"S" * 32}  # None: system writes


def _record(op: str, ctx: EncryptionContext) -> bytes:
    tenant = ctx.metadata.get("tenant")
    with open(os.environ["TENANT_CIPHER_CALLS"], "a") as f:
        f.write(json.dumps({"op": op, "model": ctx.model, "field": ctx.field,
                            "metadata": ctx.metadata}) + "\n")
    return KEYS[tenant]


@encryption.context
async def tenant_context(user: Any, ctx: EncryptionContext) -> dict[str, Any]:
    assert user.identity in ("alice", "bob")
    return {**ctx.metadata, "tenant": user.tenant_id}  # the header cannot pick it


@encryption.encrypt.blob
async def encrypt_blob(ctx: EncryptionContext, blob: bytes) -> bytes:
    key = _record("encrypt", ctx)
    nonce = os.urandom(12)
    aad = str(ctx.metadata.get("tenant")).encode()  # bound to the tenant
    return nonce + AESGCM(key).encrypt(nonce, blob, aad)


@encryption.decrypt.blob
async def decrypt_blob(ctx: EncryptionContext, blob: bytes) -> bytes:
    key = _record("decrypt", ctx)
    aad = str(ctx.metadata.get("tenant")).encode()
    return AESGCM(key).decrypt(blob[:12], blob[12:], aad)
