"""treadle.redaction: the one function that hides secrets in what treadle prints."""

from __future__ import annotations

import logging

import pytest

from treadle.redaction import MASK, RedactingFormatter, is_secret_name, redact, redact_value


@pytest.mark.parametrize("name", [
    "password", "PASSWORD", "db_password", "passwd", "api_key", "OPENAI_API_KEY", "x-api-key",
    "apikey", "private_key", "client_secret", "AWS_SECRET_ACCESS_KEY", "access_token",
    "refresh_token", "LANGSMITH_TOKEN", "Authorization", "authorization", "credentials",
    "Cookie", "encryption_key",
])
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    "task_key", "idempotency_key", "treadle_idempotency_key", "key", "thread_id", "run_id",
    "max_tokens", "input_tokens", "total_tokens", "token_usage", "tokenizer", "user",
    "keyboard", "monkey",
])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


@pytest.mark.parametrize(("text", "shown"), [
    ("postgresql://app:s3cret@db:5432/x", "postgresql://app:***@db:5432/x"),
    ("connect to redis://:s3cret@cache/0 failed", "connect to redis://:***@cache/0 failed"),
    ("api_key=s3cret&x=1", "api_key=***&x=1"),
    ('api_key = "s3cret"', 'api_key = "***"'),
    ('{"password": "s3cret", "user": "bob"}', '{"password": "***", "user": "bob"}'),
    ("{'client_secret': 's3cret'}", "{'client_secret': '***'}"),
    ("Authorization: Bearer s3cret.abc", "Authorization: ***"),
    ("{'Authorization': 'Bearer s3cret'}", "{'Authorization': '***'}"),
    ("sent Bearer eyJhbGciOi.xyz to the API", "sent Bearer *** to the API"),
    ("OPENAI key sk-proj-abcdefghijklmnop1234 rejected", "OPENAI key *** rejected"),
    ("langsmith lsv2_pt_0123456789abcdef_x", "langsmith ***"),
    ("token: s3cret", "token: ***"),
    ("max_tokens=1024 task_key=t-1 user=bob", "max_tokens=1024 task_key=t-1 user=bob"),
    ("https://example.com/a:b@c", "https://example.com/a:b@c"),
    ("", ""),
])
def test_redact_text(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert redact(shown) == shown  # redacting twice changes nothing


def test_environment_secrets_are_hidden_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "plain-value-without-a-marker")
    monkeypatch.setenv("MY_SERVICE_URL", "https://not-a-secret.example")
    monkeypatch.setenv("SOME_FLAG_TOKEN", "1")  # too short to hide
    text = "GET https://not-a-secret.example with plain-value-without-a-marker, retry 1"
    assert redact(text) == f"GET https://not-a-secret.example with {MASK}, retry 1"


def test_redact_value_hides_secret_fields_in_nested_data() -> None:
    value = {"user": "bob", "api_key": "k", "nested": [{"Authorization": "Basic x"},
             "postgresql://u:p@h/db"], "count": 3, "password": None}
    assert redact_value(value) == {
        "user": "bob", "api_key": MASK, "nested": [{"Authorization": MASK},
        "postgresql://u:***@h/db"], "count": 3, "password": None}
    assert redact_value("s3cret", "db_password") == MASK
    assert redact_value(ValueError("token=abc")) == "ValueError: token=***"


def test_redacting_formatter_hides_secrets_in_the_traceback() -> None:
    try:
        raise RuntimeError("login with password=hunter22 failed")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", ("api_key=k1",),
                                   exc_info=__import__("sys").exc_info())
    text = RedactingFormatter("%(message)s").format(record)
    assert "hunter22" not in text and "k1" not in text
    assert "failed: api_key=***" in text and "RuntimeError: login with password=***" in text


@pytest.mark.timeout(60)  # a guard against hanging, not a speed claim
@pytest.mark.parametrize("text", [
    "a" * 1_000_000,  # one long name with no separator after it
    "a-" * 500_000,  # a name token that restarts at every "-"
    "eyJ-" * 250_000,  # a JWT start at every "-", never a JWT
    "a-" * 500_000 + "://x",  # a URL scheme that restarts at every "-"
    "x://" * 250_000,  # URL starts with no password
    "a:" * 500_000,  # a name and a separator everywhere, no secret name
    "password" + " " * 1_000_000,  # a secret name, then nothing to mask
], ids=["word", "dashes", "jwt-starts", "scheme", "urls", "colons", "spaces"])
def test_redaction_stays_linear_on_hostile_text(text: str) -> None:
    """redact() runs on request errors that echo client input: each pattern starts only where
    its token starts and bounds its scan, so a megabyte (a request body's worth) is read once,
    not once per position (before: 40 kB of "a" took 26 s, a megabyte hours)."""
    assert redact(text).startswith(text[:1])
