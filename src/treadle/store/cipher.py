"""The built-in cipher: AES-256-GCM under a keyring of named keys, for rotation.

A keyring is written ``"k2:<base64 key>,k1:<base64 key>"`` (``TREADLE_ENCRYPTION_KEYS``):
the first key encrypts, every key decrypts. Each ciphertext starts with the id of the key
that sealed it, so rotating is: put a new key first, keep the old ones until everything
they sealed has been rewritten or deleted, then drop them. ``LANGGRAPH_AES_KEY`` (LangGraph's
``EncryptedSerializer`` variable: 16, 24 or 32 raw bytes) joins the keyring as the key
``langgraph`` (last, unless it is the only key).

Sealed bytes: ``len(key id)`` (1 byte), the key id, a 12-byte random nonce, then the
AES-GCM ciphertext and its 16-byte tag. A changed byte, a wrong key or a truncated value
fails authentication and raises :class:`~treadle.errors.EncryptionError`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from treadle.errors import ConfigError, EncryptionError

__all__ = ["LANGGRAPH_KEY_ID", "Keyring", "generate_key", "parse_keyring"]

LANGGRAPH_KEY_ID = "langgraph"
_KEY_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NONCE = 12
_AAD = b"treadle-at-rest-v1"


def generate_key() -> str:
    """A new random 256-bit key, base64 (what ``treadle keygen`` prints)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


@dataclass(frozen=True)
class Keyring:
    """Named AES-GCM keys: ``primary`` encrypts, all of ``keys`` decrypt."""

    primary: str
    keys: dict[str, bytes]

    def __repr__(self) -> str:  # never the key bytes
        return f"Keyring(primary={self.primary!r}, ids={list(self.keys)!r})"

    def encrypt(self, data: bytes) -> bytes:
        kid = self.primary.encode()
        nonce = os.urandom(_NONCE)
        return bytes([len(kid)]) + kid + nonce + AESGCM(self.keys[self.primary]).encrypt(
            nonce, data, _AAD)

    def decrypt(self, sealed: bytes) -> bytes:
        if not sealed:
            raise EncryptionError("an encrypted value is empty (truncated)")
        n = sealed[0]
        kid = sealed[1:1 + n].decode("ascii", "replace")
        body = sealed[1 + n:]
        key = self.keys.get(kid)
        if key is None:
            raise EncryptionError(
                f"a value was encrypted with key id {kid!r}, which is not in the keyring "
                f"(ids: {', '.join(self.keys)}): add that key to TREADLE_ENCRYPTION_KEYS")
        try:
            return AESGCM(key).decrypt(body[:_NONCE], body[_NONCE:], _AAD)
        except (InvalidTag, ValueError) as exc:
            raise EncryptionError(
                f"a value encrypted with key {kid!r} failed authentication: it was altered, "
                "truncated, or that key id now holds a different key") from exc


def parse_keyring(spec: str | None, langgraph_key: str | None = None) -> Keyring | None:
    """The keyring of ``TREADLE_ENCRYPTION_KEYS`` (``id:base64,...``) plus
    ``LANGGRAPH_AES_KEY``; None when both are empty. Bad input: ConfigError naming the
    entry (never its key)."""
    keys: dict[str, bytes] = {}
    for n, entry in enumerate(e.strip() for e in (spec or "").split(",")):
        if not entry:
            continue
        kid, sep, b64 = entry.partition(":")
        kid = kid.strip()
        if not sep or not _KEY_ID.fullmatch(kid):
            raise ConfigError(
                f"TREADLE_ENCRYPTION_KEYS entry {n + 1} must be ID:BASE64KEY with an id of "
                "letters, digits, '_', '.', '-' (generate a key with `treadle keygen`)")
        try:
            key = base64.b64decode(b64.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"TREADLE_ENCRYPTION_KEYS key {kid!r} is not valid base64 "
                              "(generate one with `treadle keygen`)") from None
        if len(key) != 32:
            raise ConfigError(f"TREADLE_ENCRYPTION_KEYS key {kid!r} must be 32 bytes "
                              f"(256 bits), not {len(key)} (generate one with `treadle keygen`)")
        if kid in keys:
            raise ConfigError(f"TREADLE_ENCRYPTION_KEYS names key {kid!r} twice")
        keys[kid] = key
    if langgraph_key:
        raw = langgraph_key.encode()
        if len(raw) not in (16, 24, 32):
            raise ConfigError("LANGGRAPH_AES_KEY must be 16, 24 or 32 bytes long")
        keys.setdefault(LANGGRAPH_KEY_ID, raw)
    if not keys:
        return None
    return Keyring(next(iter(keys)), keys)
