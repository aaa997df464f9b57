"""Secrets stay secret: every secret setting is a pydantic ``SecretStr``, a settings repr
hides the store's password, and the redaction filter hides treadle's API keys, JWTs,
header values, query-string tokens, encryption key lists and the settings' own secrets."""

from __future__ import annotations

import typing

import pytest
from pydantic import SecretStr

from treadle import redaction
from treadle.config import Settings, get_settings
from treadle.redaction import MASK, is_secret_name, redact

API_KEY = "tdl_k3y1d_Zm9vYmFyYmF6cXV4LXNlY3JldC0xMjM0NQ"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c2VyLTEiLCJ0ZW5hbnQiOiJ0MSJ9."
       "c2lnbmF0dXJlLW9mLXRoZS10b2tlbg")
AES = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80="


def _is_secret_str(annotation: object) -> bool:
    return annotation is SecretStr or any(_is_secret_str(a) for a in typing.get_args(annotation))


def test_every_secret_setting_is_a_secret_str() -> None:
    secret = {name for name in Settings.model_fields if is_secret_name(name)}
    plain = {name for name in secret if not _is_secret_str(Settings.model_fields[name].annotation)}
    assert plain == set(), f"make these settings SecretStr: {sorted(plain)}"


def test_a_settings_repr_hides_the_store_password() -> None:
    settings = get_settings(store="postgresql://app:pw-in-the-url-77@db:5432/x")
    assert "pw-in-the-url-77" not in repr(settings) and "pw-in-the-url-77" not in str(settings)
    assert "postgresql://app:***@db:5432/x" in repr(settings)
    assert settings.store.endswith("pw-in-the-url-77@db:5432/x")  # the value itself is intact


@pytest.mark.parametrize(("text", "shown"), [
    (f"x-api-key: {API_KEY}", "x-api-key: ***"),
    (f"{{'x-api-key': '{API_KEY}'}}", "{'x-api-key': '***'}"),
    (f"bad key {API_KEY} refused", f"bad key {MASK} refused"),
    (f"Authorization: Bearer {JWT}", "Authorization: ***"),
    (f"token {JWT} expired", f"token {MASK} expired"),
    (f"GET /threads/t/stream?access_token={JWT}&x=1 HTTP/1.1",
     "GET /threads/t/stream?access_token=***&x=1 HTTP/1.1"),
    (f"GET /runs?api_key={API_KEY} HTTP/1.1", "GET /runs?api_key=*** HTTP/1.1"),
    ("postgresql://app:pg-pw-3@db/x?sslmode=require", "postgresql://app:***@db/x?sslmode=require"),
    (f"encryption_keys=k1:{AES}", "encryption_keys=***"),
])
def test_redact_hides_keys_tokens_and_headers(text: str, shown: str) -> None:
    assert redact(text) == shown


@pytest.mark.parametrize("name", ["encryption_keys", "TREADLE_ENCRYPTION_KEYS", "api_keys",
                                  "jwt", "TREADLE_JWT_SECRET", "TREADLE_WEBHOOK_SECRET",
                                  "LANGGRAPH_AES_KEY"])
def test_secret_list_and_token_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["feedback_keys", "sort_keys", "task_keys", "jwt_issuer",
                                  "jwt_audience", "TREADLE_JWT_JWKS_URL", "jwt_role_claim"])
def test_names_near_secret_ones_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_each_key_of_a_secret_list_in_the_environment_is_hidden(
        monkeypatch: pytest.MonkeyPatch) -> None:
    other = "bm90LXRoZS1maXJzdC1rZXktYXQtYWxsLTEyMzQ1Ng=="
    monkeypatch.setenv("TREADLE_ENCRYPTION_KEYS", f"k1:{AES},k2:{other}")
    assert redact(f"decrypt with {other} failed; key {AES}") == \
        f"decrypt with {MASK} failed; key {MASK}"


def test_remembered_settings_secrets_are_hidden_anywhere() -> None:
    class WithSecrets(Settings):
        some_secret: SecretStr = SecretStr("flag-given-secret-9f8e")
        some_keys: list[SecretStr] = [SecretStr(f"k1:{AES}")]

    redaction.remember(WithSecrets(store="postgresql://u:remembered-pw-1@h/db"))
    text = f"flag-given-secret-9f8e {AES} remembered-pw-1 fine"
    assert redact(text) == f"{MASK} {MASK} {MASK} fine"
