"""Encryption at rest: the one place the store seals what it writes and opens what it reads.

A :class:`Store` holds one :class:`AtRest` (``store.at_rest``), built from the settings by
:func:`build` when the store is opened, so the API, ``treadle worker`` and in-process
workers all seal and open the same way, on SQLite and PostgreSQL alike. The store's record
classes call it for each column holding user data:

* opaque bytes (checkpoints, channel values, task writes, through :class:`SealingSerde`;
  queued run payloads and results, node task payloads and results, stream events):
  :meth:`AtRest.seal` / :meth:`AtRest.open`;
* JSON columns held whole (item values, a thread's cached values and interrupts, a cron's
  run payload): :meth:`AtRest.seal_json` stores ``{"$tdl": "<base64>"}``;
* metadata (threads, runs, checkpoints): only the keys of
  ``TREADLE_ENCRYPTED_METADATA_FIELDS`` (or whatever a user JSON encryptor changes), so the
  other keys stay filterable;
* error texts: sealed as a token inside the text (treadle's own notes around it stay).

The cipher is the built-in keyring (:mod:`treadle.store.cipher`, ``TREADLE_ENCRYPTION_KEYS``
and/or ``LANGGRAPH_AES_KEY``) or a ``langgraph_sdk.Encryption`` (langgraph.json
``"encryption"``; its async handlers run on one private event loop thread). Sealed bytes
start with ``tdl\\x01`` and a mode byte (``k`` keyring, ``u`` user handlers). User handlers'
values written with an encryption context (``ctx.metadata``: the request's
``X-Encryption-Context`` / ``@encryption.context``, or the run's, see :func:`context_scope`)
start with ``tdl\\x02``, the mode byte, then the context as length-prefixed JSON, stored
unencrypted so any process decrypts with the context the value was encrypted with. With
encryption on, a value without either prefix is plaintext written before encryption was
turned on: it is refused (:class:`~treadle.errors.EncryptionError`) unless ``TREADLE_ENCRYPTION_ALLOW_PLAINTEXT``
is set for a migration. (LangGraph's ``EncryptedSerializer`` would accept it silently.)
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import importlib.util
import json
import os
import re
import struct
import sys
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from treadle.errors import AccessFilterError, ConfigError, EncryptionError, InputError
from treadle.store import jsonsafe
from treadle.store.access import Access, filter_keys, validate
from treadle.store.cipher import Keyring, parse_keyring

if TYPE_CHECKING:
    from langgraph.checkpoint.serde.base import SerializerProtocol

    from treadle.config import Settings

__all__ = ["CONTEXT_KEY", "PLAIN", "AtRest", "Cipher", "SealingSerde", "build", "check_context",
           "context_scope", "current_context", "in_context_scope", "load_encryption"]

_MAGIC = b"tdl\x01"  # v1: magic, mode byte, cipher output
_MAGIC2 = b"tdl\x02"  # v2: magic, mode byte, u32 length + JSON context, cipher output
_MAX_CONTEXT = 64 * 1024
#: Where a run's ``configurable`` carries the encryption context of the request that made it.
CONTEXT_KEY = "langgraph_encryption_context"

_context: ContextVar[Mapping[str, Any] | None] = ContextVar("treadle_encryption_context",
                                                             default=None)


def current_context() -> dict[str, Any]:
    """The encryption context (``ctx.metadata``) of what is being written now: the request's
    (``X-Encryption-Context`` and/or ``@encryption.context``) or the run's; ``{}`` if none."""
    return dict(_context.get() or {})


@contextmanager
def context_scope(metadata: Mapping[str, Any] | None) -> Iterator[None]:
    """Seal what is written inside the block (this task and what it starts) with ``metadata``
    as the encryption context."""
    token = _context.set(dict(metadata or {}))
    try:
        yield
    finally:
        _context.reset(token)


def in_context_scope() -> bool:
    """Whether a request or run set the context (:func:`context_scope`), even to ``{}``."""
    return _context.get() is not None


def check_context(value: Any, where: str) -> dict[str, Any]:
    """``value`` as an encryption context: a JSON object (its text is stored unencrypted)."""
    if not isinstance(value, dict):
        raise EncryptionError(f"{where} must be a JSON object, not {type(value).__name__}")
    try:
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise EncryptionError(f"{where} must be JSON-serializable: {exc}") from None
    if len(text) > _MAX_CONTEXT:
        raise EncryptionError(f"{where} is larger than {_MAX_CONTEXT} bytes of JSON")
    return dict(json.loads(text))
_TOKEN = "tdl1:"
_TOKEN_RE = re.compile(r"tdl1:[A-Za-z0-9+/=]+")
_JSON_KEY = "$tdl"


class Cipher(Protocol):
    """Seals bytes for one (model, field) and opens them again."""

    mode: bytes  # one byte, recorded in every sealed value

    #: whether the encryption context is recorded with each value (user handlers: yes)
    uses_context: bool

    def encrypt(self, data: bytes, model: str, field: str,
                metadata: Mapping[str, Any] | None = None) -> bytes: ...

    def decrypt(self, data: bytes, model: str, field: str,
                metadata: Mapping[str, Any] | None = None) -> bytes: ...


class KeyringCipher:
    """The built-in keyring; it ignores the encryption context."""

    mode = b"k"
    uses_context = False

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def encrypt(self, data: bytes, model: str, field: str,
                metadata: Mapping[str, Any] | None = None) -> bytes:
        return self.keyring.encrypt(data)

    def decrypt(self, data: bytes, model: str, field: str,
                metadata: Mapping[str, Any] | None = None) -> bytes:
        return self.keyring.decrypt(data)


class _HandlerLoop:
    """One daemon event loop thread running a user's async handlers for sync callers."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="treadle-encryption",
                                 daemon=True).start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()


_handler_loop = _HandlerLoop()


def _plaintext(result: Any) -> Any:
    """A handler's result, or the plaintext of its ``DecryptResult`` (a replacement
    ciphertext is not written back: the next write of the row re-seals it)."""
    return getattr(result, "plaintext", result)


class UserCipher:
    """A ``langgraph_sdk.Encryption``: its blob handlers seal bytes, its JSON handlers (when
    registered) seal metadata."""

    mode = b"u"
    uses_context = True

    def __init__(self, encryption: Any) -> None:
        from langgraph_sdk.encryption.types import EncryptionContext

        self._ctx = EncryptionContext
        self.blob_encrypt = encryption._blob_encryptor
        self.blob_decrypt = encryption._blob_decryptor
        self.json_encrypt = encryption._json_encryptor
        self.json_decrypt = encryption._json_decryptor
        self.context_handler = getattr(encryption, "_context_handler", None)
        if self.blob_encrypt is None or self.blob_decrypt is None:
            raise ConfigError("the langgraph.json \"encryption\" object registers no blob "
                              "handlers: add @encryption.encrypt.blob and @encryption.decrypt.blob")
        if (self.json_encrypt is None) != (self.json_decrypt is None):
            raise ConfigError("the langgraph.json \"encryption\" object registers only one of "
                              "@encryption.encrypt.json / @encryption.decrypt.json: add both")

    def context(self, model: str, field: str, metadata: Mapping[str, Any] | None = None) -> Any:
        return self._ctx(model=model, field=field,
                         metadata=dict(metadata) if metadata is not None else current_context())

    def encrypt(self, data: bytes, model: str, field: str,
                metadata: Mapping[str, Any] | None = None) -> bytes:
        out = _handler_loop.run(self.blob_encrypt(self.context(model, field, metadata), data))
        if not isinstance(out, bytes):
            raise EncryptionError(f"the blob encryptor returned {type(out).__name__}, not bytes")
        return out

    def decrypt(self, data: bytes, model: str, field: str,
                metadata: Mapping[str, Any] | None = None) -> bytes:
        assert self.blob_decrypt is not None
        out = _plaintext(_handler_loop.run(self.blob_decrypt(self.context(model, field, metadata),
                                                             data)))
        if not isinstance(out, bytes):
            raise EncryptionError(f"the blob decryptor returned {type(out).__name__}, not bytes")
        return out

    def encrypt_json(self, data: dict[str, Any], model: str) -> dict[str, Any]:
        assert self.json_encrypt is not None
        out = _handler_loop.run(self.json_encrypt(self.context(model, "metadata"), dict(data)))
        if not isinstance(out, dict) or set(out) != set(data):
            raise EncryptionError("the JSON encryptor must return a dict with the same keys")
        return out

    def decrypt_json(self, data: dict[str, Any], model: str) -> dict[str, Any]:
        assert self.json_decrypt is not None
        out = _plaintext(_handler_loop.run(self.json_decrypt(self.context(model, "metadata"),
                                                              dict(data))))
        if not isinstance(out, dict):
            raise EncryptionError("the JSON decryptor must return a dict")
        return out


class AtRest:
    """How one store seals and opens user data; ``AtRest()`` (:data:`PLAIN`) is off."""

    def __init__(self, cipher: Cipher | None = None, *, metadata_keys: frozenset[str] = frozenset(),
                 allow_plaintext: bool = False) -> None:
        self.cipher = cipher
        self.metadata_keys = metadata_keys
        self.allow_plaintext = allow_plaintext

    @property
    def enabled(self) -> bool:
        return self.cipher is not None

    def __repr__(self) -> str:
        return f"AtRest(cipher={self.cipher!r}, metadata_keys={sorted(self.metadata_keys)!r})"

    # --- bytes --------------------------------------------------------------------------
    def seal(self, data: bytes, model: str, field: str) -> bytes:
        if self.cipher is None:
            return data
        ctx = current_context() if self.cipher.uses_context else {}
        body = self.cipher.encrypt(bytes(data), model, field, ctx)
        if not ctx:  # the v1 envelope, as before contexts
            return _MAGIC + self.cipher.mode + body
        header = json.dumps(ctx, separators=(",", ":"), sort_keys=True).encode()
        return _MAGIC2 + self.cipher.mode + struct.pack(">I", len(header)) + header + body

    def seal_opt(self, data: bytes | None, model: str, field: str) -> bytes | None:
        return None if data is None else self.seal(data, model, field)

    def open(self, data: bytes, model: str, field: str) -> bytes:
        data = bytes(data)
        if not data.startswith((_MAGIC, _MAGIC2)):
            if self.cipher is not None and not self.allow_plaintext:
                raise EncryptionError(
                    f"a {model} {field} in the store is not encrypted while encryption at rest "
                    "is on: it was written before encryption was turned on. Set "
                    "TREADLE_ENCRYPTION_ALLOW_PLAINTEXT=true to read such rows while migrating")
            return data
        if self.cipher is None:
            raise EncryptionError(
                f"a {model} {field} in the store is encrypted but encryption at rest is off: "
                "set TREADLE_ENCRYPTION_KEYS (or langgraph.json \"encryption\") as it was written")
        mode, body = data[len(_MAGIC):len(_MAGIC) + 1], data[len(_MAGIC) + 1:]
        if mode != self.cipher.mode:
            raise EncryptionError(
                f"a {model} {field} was encrypted by "
                f"{'the built-in keyring' if mode == b'k' else 'langgraph.json encryption handlers'}"
                ", which is not the encryption configured now")
        ctx: dict[str, Any] = {}
        if data.startswith(_MAGIC2):
            ctx, body = _split_context(body, model, field)
        return self.cipher.decrypt(body, model, field, ctx)

    def open_opt(self, data: bytes | None, model: str, field: str) -> bytes | None:
        return None if data is None else self.open(data, model, field)

    # --- text and JSON ------------------------------------------------------------------
    def _token(self, value: Any, model: str, field: str) -> str:
        raw = json.dumps(value, separators=(",", ":")).encode()  # ASCII: lone surrogates too
        return _TOKEN + base64.b64encode(self.seal(raw, model, field)).decode()

    def _untoken(self, token: str, model: str, field: str) -> Any:
        return jsonsafe.loads(self.open(base64.b64decode(token[len(_TOKEN):]), model, field).decode())

    def seal_json(self, text: str | None, model: str, field: str) -> str | None:
        """JSON text (as the column holds it) sealed whole, as ``{"$tdl": token}``."""
        if self.cipher is None or text is None:
            return text
        return json.dumps({_JSON_KEY: self._token(json.loads(text), model, field)})

    def open_json(self, value: Any, model: str, field: str) -> Any:
        """A JSON column's value (already parsed) as written before :meth:`seal_json`."""
        if isinstance(value, dict) and set(value) == {_JSON_KEY} and \
                isinstance(value[_JSON_KEY], str) and value[_JSON_KEY].startswith(_TOKEN):
            return self._untoken(value[_JSON_KEY], model, field)
        if self.cipher is not None and value is not None and not self.allow_plaintext \
                and value != {}:
            self.open(b"", model, field)  # raises the plaintext refusal
        return value

    def seal_text(self, text: str | None, model: str, field: str) -> str | None:
        """An error text sealed as one token (treadle may later append its own notes)."""
        return text if self.cipher is None or text is None else self._token(text, model, field)

    def open_text(self, text: str | None, model: str, field: str) -> str | None:
        """Every token in ``text`` opened (plaintext around them is treadle's own notes)."""
        if text is None or _TOKEN not in text:
            return text
        return _TOKEN_RE.sub(lambda m: str(self._untoken(m.group(0), model, field)), text)

    # --- metadata -----------------------------------------------------------------------
    def sealed_keys(self, keys: Iterable[str]) -> list[str]:
        """Those of ``keys`` that this store encrypts in metadata
        (``TREADLE_ENCRYPTED_METADATA_FIELDS`` with the built-in keyring), sorted. SQL cannot
        compare them (each value is sealed with its own nonce): a filter on one would match
        nothing, so callers refuse it instead (see :meth:`check_filterable`)."""
        if self.cipher is None or (isinstance(self.cipher, UserCipher)
                                   and self.cipher.json_encrypt is not None):
            return []
        return sorted(set(keys) & self.metadata_keys)

    def check_filterable(self, keys: Iterable[str], *, by_auth: bool) -> None:
        """Refuse a filter over encrypted metadata keys: an authorization handler's filter is
        a configuration error (AccessFilterError, HTTP 500: fail closed, never allow), a
        client's search filter is bad input (InputError, 422)."""
        sealed = self.sealed_keys(keys)
        if not sealed:
            return
        names = ", ".join(repr(k) for k in sealed)
        if by_auth:
            raise AccessFilterError(
                f"an authorization filter compares metadata {names}, which "
                "TREADLE_ENCRYPTED_METADATA_FIELDS encrypts at rest, so the store cannot compare "
                "it: remove it from TREADLE_ENCRYPTED_METADATA_FIELDS or filter on another key")
        raise InputError(f"metadata {names} is encrypted at rest "
                         "(TREADLE_ENCRYPTED_METADATA_FIELDS) and cannot be searched: filter by "
                         "another metadata key")

    def guard(self, access: Access) -> Access:
        """``access`` (an authorization filter), once checked by :meth:`check_filterable`."""
        if access is not None and self.cipher is not None:
            validate(access)  # a malformed filter is refused as such first
            self.check_filterable(filter_keys(access), by_auth=True)
        return access

    def seal_metadata(self, md: dict[str, Any], model: str) -> dict[str, Any]:
        if self.cipher is None or not md:
            return md
        if isinstance(self.cipher, UserCipher) and self.cipher.json_encrypt is not None:
            return self.cipher.encrypt_json(md, model)
        return {k: self._token(v, model, "metadata") if k in self.metadata_keys
                and not (isinstance(v, str) and v.startswith(_TOKEN)) else v
                for k, v in md.items()}

    def open_metadata(self, md: dict[str, Any], model: str) -> dict[str, Any]:
        if not md:
            return md
        if isinstance(self.cipher, UserCipher) and self.cipher.json_decrypt is not None:
            return self.cipher.decrypt_json(md, model)
        out = {}
        for k, v in md.items():
            if isinstance(v, str) and v.startswith(_TOKEN):
                v = self._untoken(v, model, "metadata")
            elif k in self.metadata_keys and self.cipher is not None and not self.allow_plaintext:
                self.open(b"", model, f"metadata key {k!r}")  # raises the plaintext refusal
            out[k] = v
        return out

    def seal_metadata_text(self, text: str, model: str) -> str:
        return text if self.cipher is None else json.dumps(
            self.seal_metadata(json.loads(text), model), ensure_ascii=False)

    def open_metadata_text(self, text: str, model: str) -> str:
        if self.cipher is None and _TOKEN not in text:
            return text
        return json.dumps(self.open_metadata(json.loads(text), model), ensure_ascii=False)

    def serde(self, inner: SerializerProtocol | None = None) -> SerializerProtocol:
        """``inner`` (LangGraph's default serializer if None) sealing what it writes."""
        if inner is None:
            from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

            inner = JsonPlusSerializer()
        return inner if self.cipher is None else SealingSerde(inner, self)


PLAIN = AtRest()


def _split_context(body: bytes, model: str, field: str) -> tuple[dict[str, Any], bytes]:
    """A v2 envelope's recorded encryption context and the cipher output after it."""
    if len(body) < 4:
        raise EncryptionError(f"a {model} {field} in the store is truncated (its encryption "
                              "context header is cut)")
    (n,) = struct.unpack(">I", body[:4])
    if n > _MAX_CONTEXT or len(body) < 4 + n:
        raise EncryptionError(f"a {model} {field} in the store has a damaged encryption "
                              "context header")
    try:
        ctx = json.loads(body[4:4 + n].decode())
    except (UnicodeDecodeError, ValueError):
        raise EncryptionError(f"a {model} {field} in the store has a damaged encryption "
                              "context header") from None
    if not isinstance(ctx, dict):
        raise EncryptionError(f"a {model} {field} in the store has a damaged encryption "
                              "context header")
    return ctx, body[4 + n:]


class SealingSerde:
    """A LangGraph serializer whose bytes are sealed by an :class:`AtRest` (the type tag,
    e.g. ``msgpack``, stays readable; it says only how the plaintext was encoded)."""

    def __init__(self, inner: SerializerProtocol, at_rest: AtRest, model: str = "checkpoint") -> None:
        self.inner, self.at_rest, self.model = inner, at_rest, model

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        kind, data = self.inner.dumps_typed(obj)
        return kind, self.at_rest.seal(data, self.model, "blob")

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, raw = data
        return self.inner.loads_typed((kind, self.at_rest.open(raw, self.model, "blob")))


def load_encryption(ref: str) -> Any:
    """The ``langgraph_sdk.Encryption`` at ``ref`` (``path.py:attr`` or ``module:attr``)."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ConfigError(f"encryption {ref!r} must be 'path.py:attr' or 'module:attr'")
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target)
            name = f"treadle_encryption_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(name)
            if module is None:
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    raise ConfigError(f"cannot load encryption file {target}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot load encryption {ref!r}: {type(exc).__name__}: {exc}") from exc
    obj = getattr(module, attr, None)
    from langgraph_sdk.encryption import Encryption

    if not isinstance(obj, Encryption):
        raise ConfigError(f"encryption {ref!r} is not a langgraph_sdk.Encryption instance")
    return obj


def build(settings: Settings) -> AtRest:
    """The store's encryption as ``settings`` and ``LANGGRAPH_AES_KEY`` say (off if none)."""
    keys = settings.encryption_keys.get_secret_value() if settings.encryption_keys else None
    cipher: Cipher | None = None
    if settings.encryption:
        cipher = UserCipher(load_encryption(settings.encryption))
    else:
        keyring = parse_keyring(keys, os.environ.get("LANGGRAPH_AES_KEY"))
        cipher = KeyringCipher(keyring) if keyring else None
    md_keys = frozenset(k.strip() for k in settings.encrypted_metadata_fields.split(",") if k.strip())
    return AtRest(cipher, metadata_keys=md_keys, allow_plaintext=settings.encryption_allow_plaintext)
