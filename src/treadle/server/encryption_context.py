"""The encryption context of each request, as LangGraph Platform derives it.

With langgraph.json ``"encryption"`` (a ``langgraph_sdk.Encryption``), :class:`EncryptionScope`
(pure ASGI middleware, inside authentication) gives every request an encryption context:

* the ``X-Encryption-Context`` header, if sent: a JSON object, as text or base64 of it;
* then, if the Encryption registers ``@encryption.context``, what that handler returns when
  called with the authenticated user (its fields as attributes or items) and an ``EncryptionContext`` whose ``metadata`` is the
  header's (``model`` and ``field`` are None). Without authentication there is no user and
  the handler is not called.

What the request writes is encrypted with that context as ``ctx.metadata``
(:func:`treadle.store.encryption.context_scope`), and the runs it creates carry it in
``configurable[CONTEXT_KEY]`` so the worker's writes for them use it too. A bad header is a
400; a handler that fails or answers something other than a JSON object is a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from treadle.errors import EncryptionError
from treadle.store.encryption import (
    CONTEXT_KEY,
    check_context,
    context_scope,
    current_context,
    in_context_scope,
)

__all__ = ["HEADER", "EncryptionScope", "parse_header", "with_encryption_context"]

log = logging.getLogger("treadle.encryption")

HEADER = b"x-encryption-context"


def parse_header(raw: str) -> dict[str, Any]:
    """The ``X-Encryption-Context`` value: a JSON object, or base64 (standard or URL-safe) of
    one. EncryptionError (a 400) otherwise."""
    text = raw.strip()
    if not text.startswith("{"):
        try:
            padded = text + "=" * (-len(text) % 4)
            text = base64.b64decode(padded.replace("-", "+").replace("_", "/"),
                                    validate=True).decode()
        except (binascii.Error, ValueError):
            raise EncryptionError("the X-Encryption-Context header must be a JSON object or "
                                  "base64 of one") from None
    try:
        value = json.loads(text)
    except ValueError:
        raise EncryptionError("the X-Encryption-Context header must be a JSON object or "
                              "base64 of one") from None
    return check_context(value, "the X-Encryption-Context header")


def with_encryption_context(configurable: dict[str, Any]) -> None:
    """Put the current request's encryption context in a run's ``configurable``, replacing
    whatever the client sent there (outside a request, e.g. a cron's scheduled run, the
    context the cron's request recorded stays)."""
    if not in_context_scope():
        return
    configurable.pop(CONTEXT_KEY, None)
    metadata = current_context()
    if metadata:
        configurable[CONTEXT_KEY] = metadata


class EncryptionScope:
    """ASGI middleware: seal what each request writes with its encryption context.
    ``encryption_of()`` is the ``langgraph_sdk.Encryption`` (None: no context handler)."""

    def __init__(self, app: ASGIApp, encryption_of: Callable[[], Any]) -> None:
        self.app = app
        self.encryption_of = encryption_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        try:
            metadata = await self._context(scope)
        except EncryptionError as exc:
            if scope["type"] == "http":
                await JSONResponse({"detail": str(exc)}, status_code=400)(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 4400})
            return
        except _HandlerFailed:
            if scope["type"] == "http":
                await JSONResponse({"detail": "the encryption context handler failed"},
                                   status_code=500)(scope, receive, send)
            else:
                await send({"type": "websocket.close", "code": 4500})
            return
        with context_scope(metadata):
            await self.app(scope, receive, send)

    async def _context(self, scope: Scope) -> dict[str, Any]:
        raw = next((bytes(v) for k, v in scope.get("headers", ())
                    if bytes(k).lower() == HEADER), None)
        metadata = parse_header(raw.decode("latin-1")) if raw is not None else {}
        encryption = self.encryption_of()
        handler = getattr(encryption, "_context_handler", None)
        user = (scope.get("state") or {}).get("auth_user")
        if handler is None or user is None:
            return metadata
        from langgraph_sdk.encryption.types import EncryptionContext

        try:
            out = await handler(_HandlerUser(user), EncryptionContext(metadata=dict(metadata)))
        except Exception as exc:
            log.error("the @encryption.context handler failed: %s", type(exc).__name__)
            raise _HandlerFailed from None
        try:
            return check_context(out, "what the @encryption.context handler returns")
        except EncryptionError as exc:
            log.error("%s", exc)
            raise _HandlerFailed from None


class _HandlerFailed(Exception):
    """The user's context handler raised or answered no JSON object (a 500)."""


class _HandlerUser:
    """The authenticated user as the context handler sees it: ``user.identity`` and the
    authenticate handler's other fields as attributes too (``user.tenant_id``, as the SDK's
    example writes it), besides ``user["tenant_id"]``."""

    def __init__(self, user: Any) -> None:
        self._user = user

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(self._user, name)
        except AttributeError:
            extra = getattr(self._user, "extra", None) or {}
            if name in extra:
                return extra[name]
            raise

    def __getitem__(self, key: str) -> Any:
        return self._user[key]

    def __contains__(self, key: object) -> bool:
        return key in self._user

    def __iter__(self) -> Any:
        return iter(self._user)

    def __repr__(self) -> str:
        return repr(self._user)
