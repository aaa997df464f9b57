"""Secrets out of everything treadle prints: log lines, exception messages, CLI errors.

One function, :func:`redact`, hides in a text:

* a password in a URL's user-info (``postgresql://app:***@db/x``);
* the value after a secret-looking name, in the spellings logs and tracebacks use:
  ``api_key=…``, ``api_key = "…"``, ``"password": "…"``, ``'Authorization': 'Bearer …'``,
  ``token: …`` (a secret-looking name: ``password``, ``passwd``, ``*secret*``,
  ``*token*`` (not a count such as ``max_tokens``), ``*_key`` / ``apikey`` (not
  treadle's identifiers such as ``task_key``), ``authorization``, ``*credential*``,
  ``cookie``);
* ``Bearer …`` / ``Basic …`` credentials;
* well-known API key shapes (``sk-…``, ``lsv2_…``, ``ghp_…``, ``xox?-…``, ``AKIA…``,
  treadle's own ``tdl_…`` keys) and JSON Web Tokens (``eyJ….eyJ….…``);
* the value of every environment variable with a secret-looking name
  (``OPENAI_API_KEY``, ``TREADLE_…_PASSWORD``, ``TREADLE_ENCRYPTION_KEYS``, …), and each
  item of a list of them (``id1:key1,id2:key2``), wherever it appears;
* the secrets of the process's settings (:func:`remember`: its ``SecretStr`` values and
  the store URL's password), even when given as CLI flags.

:func:`redact_value` applies it to structured data (a log event's fields), hiding the
whole value of a secret-looking key. :func:`redact_event` is the structlog processor
and :class:`RedactingFormatter` the ``logging`` formatter that run it on every line.
"""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

__all__ = ["MASK", "RedactingFormatter", "is_secret_name", "redact", "redact_event",
           "redact_value", "remember"]

MASK = "***"

_SECRET_NAME = re.compile(
    r"passw(?:or)?d|secret|token(?!s|_?counts?|_?usage|_?limit|izer)|authori[sz]ation"
    r"|credential|cookie|apikey|(?:^|_)keys?$|_key_|private_?key|(?:^|_)jwt$"
)
# treadle's (and its callers') identifiers that end in _key and hold no secret.
_NOT_SECRET = frozenset({
    "task_key", "idempotency_key", "run_key", "block_key", "merge_key", "sort_key",
    "cache_key", "partition_key", "primary_key", "foreign_key", "session_key",
    "database_key", "checkpoint_key", "key", "keys", "feedback_keys", "sort_keys",
    "task_keys", "idempotency_keys", "cache_keys", "primary_keys", "partition_keys",
})
_MIN_ENV_SECRET = 6  # shorter values ("true", "1") would hide ordinary text


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a field, header, option or variable called ``name`` holds a secret."""
    normal = re.sub(r"[\s.\-]+", "_", name.strip().strip("\"'")).lower()
    if normal in _NOT_SECRET or normal.endswith("_idempotency_key"):
        return False
    return bool(_SECRET_NAME.search(normal))


# Every pattern starts where its token starts (a lookbehind, not \b, which also matches
# inside "a-b-c") and bounds what it must scan before failing: redact() runs on request
# errors that echo client input, so a pattern that rescans the text from every position
# (quadratic: 40 kB of "a" took 26 s) would let one request pin a CPU.
_URL_PASSWORD = re.compile(
    r"(?P<head>(?<![a-zA-Z0-9+.\-])[a-zA-Z][a-zA-Z0-9+.\-]{0,31}://[^\s:/@?#]{0,256}:)"
    r"[^\s@/]{1,1024}(?=@)")
_NAME_SEP = re.compile(r"(?<![\w.\-])(?P<name>[A-Za-z_][\w.\-]{0,127})(?P<sep>[\"']?\s{0,16}[:=]\s*)")
_VALUE = re.compile(
    r"\"[^\"\n]*\"?|'[^'\n]*'?|(?:(?:Bearer|Basic|Token)\s+)?[^\s,;&)}\]\"']+"
)
_SCHEME_CREDENTIAL = re.compile(r"\b(?P<scheme>Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{6,}")
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_\-]{12,}|lsv2_[A-Za-z0-9_]{12,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}"
    r"|tdl_[A-Za-z0-9_\-]{8,}"  # treadle's API keys: tdl_<key id>_<secret>
    r"|(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{6,8192}\.eyJ[A-Za-z0-9_\-]{6,65536}\.[A-Za-z0-9_\-]*)"  # a JWT
)


def _mask_assignments(text: str) -> str:
    """The value after each secret-looking ``name=`` / ``name:`` masked (quotes kept)."""
    parts: list[str] = []
    pos = 0
    for match in _NAME_SEP.finditer(text):
        if match.start() < pos or not is_secret_name(match.group("name")):
            continue
        value = _VALUE.match(text, match.end())
        if value is None:
            continue
        quote = value.group(0)[:1] if value.group(0)[:1] in "\"'" else ""
        closed = quote and len(value.group(0)) > 1 and value.group(0).endswith(quote)
        parts += [text[pos:match.end()], quote, MASK, quote if closed else ""]
        pos = value.end()
    return "".join(parts) + text[pos:] if parts else text


_MIN_ITEM_SECRET = 12  # an item of a secret list (a key after its id), long enough to be one
_remembered: set[str] = set()


def _secret_values(value: str) -> set[str]:
    """``value`` and, for a list such as ``k1:key1,k2:key2``, each of its keys."""
    found = {value} if len(value) >= _MIN_ENV_SECRET else set()
    for item in re.split(r"[\s,;]+", value):
        for part in (item, item.rpartition(":")[2], item.rpartition("=")[2]):
            if len(part) >= _MIN_ITEM_SECRET:
                found.add(part)
    return found


def remember(settings: Any) -> None:
    """Hide the secrets of ``settings`` (a pydantic model) from now on: each ``SecretStr``
    value (or list of them) and the password of each URL among its strings."""
    from pydantic import SecretStr

    for _name, value in settings:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, SecretStr):
                _remembered.update(_secret_values(item.get_secret_value()))
            elif isinstance(item, str):
                for match in _URL_PASSWORD.finditer(item):
                    password = item[match.end("head"):match.end()]
                    if len(password) >= _MIN_ENV_SECRET:
                        _remembered.add(password)


def _env_secrets() -> list[str]:
    values = set(_remembered)
    for k, v in os.environ.items():
        if is_secret_name(k):
            values |= _secret_values(v)
    return sorted(values, key=len, reverse=True)  # a longer secret before its prefix


def redact(text: str) -> str:
    """``text`` with every secret it shows replaced by ``***`` (see the module doc)."""
    return _redact(text, _env_secrets()) if text else text


def _redact(text: str, env_secrets: list[str]) -> str:
    for secret in env_secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    text = _mask_assignments(text)
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m.group('scheme')} {MASK}", text)
    return _KEY_SHAPES.sub(MASK, text)


def redact_value(value: Any, name: str | None = None) -> Any:
    """``value`` (nested dicts, lists, strings) with secrets hidden; under a secret-looking
    ``name`` the whole value is hidden. Other types are returned as they are."""
    return _redact_value(value, name, _env_secrets())


def _redact_value(value: Any, name: str | None, env_secrets: list[str]) -> Any:
    if name is not None and is_secret_name(name) and value not in (None, "", True, False):
        return MASK
    if isinstance(value, str):
        return _redact(value, env_secrets) if value else value
    if isinstance(value, Mapping):
        return {k: _redact_value(v, str(k), env_secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact_value(v, None, env_secrets) for v in value]
    if isinstance(value, BaseException):
        return _redact(f"{type(value).__name__}: {value}", env_secrets)
    return value


def redact_event(_logger: Any, _method: str,
                 event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every field of the event, its message and its (already
    formatted) ``exception`` pass through :func:`redact_value`."""
    env_secrets = _env_secrets()
    for key in list(event):
        if key.startswith("_") or key == "exc_info":  # structlog's own; formatted later
            continue
        name = None if key in ("event", "exception") else key
        event[key] = _redact_value(event[key], name, env_secrets)
    return event


class RedactingFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose every line (traceback included) is :func:`redact`-ed."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
