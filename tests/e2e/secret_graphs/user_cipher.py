"""A langgraph_sdk ``Encryption`` as a user writes it (AES-GCM with a fixed test key)."""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from langgraph_sdk import Encryption, EncryptionContext

encryption = Encryption()
_KEY = AESGCM(b"0123456789abcdef0123456789abcdef")
_PREFIX = "user-enc:"
_SECRET_KEYS = {"ssn"}


@encryption.encrypt.blob
async def encrypt_blob(ctx: EncryptionContext, blob: bytes) -> bytes:
    nonce = os.urandom(12)
    return b"USR" + nonce + _KEY.encrypt(nonce, blob, None)


@encryption.decrypt.blob
async def decrypt_blob(ctx: EncryptionContext, blob: bytes) -> bytes:
    assert blob[:3] == b"USR"
    return _KEY.decrypt(blob[3:15], blob[15:], None)


@encryption.encrypt.json
async def encrypt_json(ctx: EncryptionContext, data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if k in _SECRET_KEYS and isinstance(v, str):
            nonce = os.urandom(12)
            v = _PREFIX + base64.b64encode(nonce + _KEY.encrypt(nonce, v.encode(), None)).decode()
        out[k] = v
    return out


@encryption.decrypt.json
async def decrypt_json(ctx: EncryptionContext, data: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in data.items():
        if isinstance(v, str) and v.startswith(_PREFIX):
            raw = base64.b64decode(v[len(_PREFIX):])
            v = _KEY.decrypt(raw[:12], raw[12:], None).decode()
        out[k] = v
    return out
