"""The built-in AES-GCM keyring (treadle.store.cipher)."""

from __future__ import annotations

import base64

import pytest

from treadle.errors import ConfigError, EncryptionError
from treadle.store.cipher import LANGGRAPH_KEY_ID, Keyring, generate_key, parse_keyring


def _key(fill: bytes) -> str:
    return base64.b64encode(fill * 32).decode()


def _ring(spec: str) -> Keyring:
    ring = parse_keyring(spec)
    assert ring is not None
    return ring


def test_round_trip_and_fresh_nonces() -> None:
    ring = _ring(f"k1:{_key(b'a')}")
    one, two = ring.encrypt(b"hello"), ring.encrypt(b"hello")
    assert one != two and b"hello" not in one
    assert ring.decrypt(one) == ring.decrypt(two) == b"hello"
    assert ring.decrypt(ring.encrypt(b"")) == b""


def test_the_first_key_encrypts_and_records_its_id() -> None:
    ring = _ring(f"k2:{_key(b'b')}, k1:{_key(b'a')}")
    assert ring.primary == "k2"
    sealed = ring.encrypt(b"x")
    assert sealed[1:1 + sealed[0]] == b"k2"


def test_rotation_old_key_still_decrypts() -> None:
    old = _ring(f"k1:{_key(b'a')}").encrypt(b"written before rotation")
    rotated = _ring(f"k2:{_key(b'b')},k1:{_key(b'a')}")
    assert rotated.decrypt(old) == b"written before rotation"


def test_unknown_key_id_is_a_clear_error() -> None:
    sealed = _ring(f"gone:{_key(b'a')}").encrypt(b"x")
    with pytest.raises(EncryptionError, match="key id 'gone'.*not in the keyring"):
        _ring(f"k2:{_key(b'b')}").decrypt(sealed)


@pytest.mark.parametrize("position", [0, 5, -1])
def test_tampering_fails_authentication(position: int) -> None:
    ring = _ring(f"k1:{_key(b'a')}")
    sealed = bytearray(ring.encrypt(b"some plaintext"))
    sealed[position if position else 3] ^= 0x01  # (byte 0 is the id length: keep it)
    with pytest.raises(EncryptionError):
        ring.decrypt(bytes(sealed))


def test_a_different_key_under_the_same_id_fails_authentication() -> None:
    sealed = _ring(f"k1:{_key(b'a')}").encrypt(b"x")
    with pytest.raises(EncryptionError, match="failed authentication"):
        _ring(f"k1:{_key(b'z')}").decrypt(sealed)


def test_truncated_value_is_refused() -> None:
    ring = _ring(f"k1:{_key(b'a')}")
    with pytest.raises(EncryptionError):
        ring.decrypt(ring.encrypt(b"abc")[:10])
    with pytest.raises(EncryptionError, match="empty"):
        ring.decrypt(b"")


@pytest.mark.parametrize("spec, message", [
    ("nokey", "must be ID:BASE64KEY"),
    ("bad id:" + _key(b"a"), "must be ID:BASE64KEY"),
    ("k1:not base64!", "not valid base64"),
    ("k1:" + base64.b64encode(b"short").decode(), "must be 32 bytes"),
    (f"k1:{_key(b'a')},k1:{_key(b'b')}", "twice"),
])
def test_bad_keyrings_are_one_line_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_keyring(spec)
    assert _key(b"a") not in str(info.value)  # never the key itself


def test_langgraph_aes_key_joins_the_keyring() -> None:
    alone = parse_keyring(None, "0123456789abcdef")
    assert alone is not None and alone.primary == LANGGRAPH_KEY_ID
    assert alone.decrypt(alone.encrypt(b"x")) == b"x"
    both = _ring(f"k1:{_key(b'a')}")
    merged = parse_keyring(f"k1:{_key(b'a')}", "0123456789abcdef")
    assert merged is not None and merged.primary == "k1"
    assert merged.decrypt(alone.encrypt(b"y")) == b"y"
    assert merged.decrypt(both.encrypt(b"z")) == b"z"
    with pytest.raises(ConfigError, match="LANGGRAPH_AES_KEY must be 16, 24 or 32"):
        parse_keyring(None, "short")


def test_no_keys_no_keyring_and_generated_keys_parse() -> None:
    assert parse_keyring(None) is None and parse_keyring(" , ") is None
    ring = _ring(f"new:{generate_key()}")
    assert ring.decrypt(ring.encrypt(b"x")) == b"x"
    assert "new" in repr(ring) and generate_key() not in repr(ring)
