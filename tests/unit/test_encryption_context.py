"""The encryption context (``ctx.metadata``) in sealed values: a user Encryption's value
written inside a context scope records that context unencrypted (the v2 envelope) and is
decrypted with it in any later scope; values without a context keep the v1 envelope; the
keyring ignores contexts; the ``X-Encryption-Context`` header's formats; the middleware's
header-then-handler context and its refusals; runs get the request's context."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from langgraph_sdk import Encryption, EncryptionContext
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from treadle.auth.user import AuthUser
from treadle.errors import EncryptionError
from treadle.server.encryption_context import EncryptionScope, parse_header, with_encryption_context
from treadle.store.cipher import parse_keyring
from treadle.store.encryption import (
    CONTEXT_KEY,
    AtRest,
    KeyringCipher,
    UserCipher,
    context_scope,
    current_context,
)

SECRET = b"S3CRET-context-0042"
KEYS = "k1:" + base64.b64encode(b"b" * 32).decode()


def _tenant_encryption() -> tuple[Encryption, list[tuple[str, str | None, dict[str, Any]]]]:
    """Blob handlers whose key is the tenant of ``ctx.metadata`` (XOR with its first byte)."""
    enc = Encryption()
    calls: list[tuple[str, str | None, dict[str, Any]]] = []

    def key(ctx: EncryptionContext) -> int:
        return ord(str(ctx.metadata.get("tenant", "-"))[0])

    @enc.encrypt.blob
    async def encrypt_blob(ctx: EncryptionContext, blob: bytes) -> bytes:
        calls.append(("encrypt", ctx.model, dict(ctx.metadata)))
        return bytes(b ^ key(ctx) for b in blob)

    @enc.decrypt.blob
    async def decrypt_blob(ctx: EncryptionContext, blob: bytes) -> bytes:
        calls.append(("decrypt", ctx.model, dict(ctx.metadata)))
        return bytes(b ^ key(ctx) for b in blob)

    return enc, calls


def test_the_context_is_recorded_with_the_value_and_given_back_to_decrypt() -> None:
    enc, calls = _tenant_encryption()
    at_rest = AtRest(UserCipher(enc))
    with context_scope({"tenant": "acme", "region": "eu"}):
        sealed = at_rest.seal(SECRET, "checkpoint", "blob")
    assert sealed.startswith(b"tdl\x02u")
    header = json.dumps({"region": "eu", "tenant": "acme"}, separators=(",", ":")).encode()
    assert header in sealed and SECRET not in sealed  # the context is stored unencrypted
    calls.clear()
    with context_scope({"tenant": "zeta"}):  # another request reads it: the recorded context
        assert at_rest.open(sealed, "checkpoint", "blob") == SECRET
    assert at_rest.open(sealed, "checkpoint", "blob") == SECRET  # no scope at all (a worker)
    assert calls == [("decrypt", "checkpoint", {"tenant": "acme", "region": "eu"})] * 2


def test_json_and_text_tokens_carry_the_context() -> None:
    enc, calls = _tenant_encryption()
    at_rest = AtRest(UserCipher(enc), metadata_keys=frozenset({"ssn"}))
    with context_scope({"tenant": "t1"}):
        item = at_rest.seal_json(json.dumps({"v": SECRET.decode()}), "store", "value")
        md = at_rest.seal_metadata({"ssn": SECRET.decode(), "plain": 1}, "thread")
        error = at_rest.seal_text("boom " + SECRET.decode(), "run", "error")
    assert item is not None and error is not None
    calls.clear()
    assert at_rest.open_json(json.loads(item), "store", "value") == {"v": SECRET.decode()}
    assert at_rest.open_metadata(md, "thread") == {"ssn": SECRET.decode(), "plain": 1}
    assert at_rest.open_text(error, "run", "error") == "boom " + SECRET.decode()
    assert [c[2] for c in calls] == [{"tenant": "t1"}] * 3


def test_values_without_a_context_keep_the_v1_envelope_and_stay_readable() -> None:
    enc, calls = _tenant_encryption()
    at_rest = AtRest(UserCipher(enc))
    old = at_rest.seal(SECRET, "run", "kwargs")  # as before contexts existed
    assert old.startswith(b"tdl\x01u")
    with context_scope({"tenant": "acme"}):
        assert at_rest.open(old, "run", "kwargs") == SECRET  # decrypted with its own: {}
    assert calls[-1] == ("decrypt", "run", {})


def test_the_keyring_ignores_the_context() -> None:
    ring = parse_keyring(KEYS)
    assert ring is not None
    at_rest = AtRest(KeyringCipher(ring))
    with context_scope({"tenant": "acme"}):
        sealed = at_rest.seal(SECRET, "run", "kwargs")
    assert sealed.startswith(b"tdl\x01k") and b"acme" not in sealed
    assert at_rest.open(sealed, "run", "kwargs") == SECRET


@pytest.mark.parametrize("damage", [
    lambda s: s[:7],  # the length cut
    lambda s: s[:5] + b"\xff\xff\xff\xff" + s[9:],  # a length past the end
    lambda s: s[:9] + b"[" + s[10:],  # not JSON
])
def test_a_damaged_context_header_is_refused(damage: Any) -> None:
    enc, _ = _tenant_encryption()
    at_rest = AtRest(UserCipher(enc))
    with context_scope({"tenant": "acme"}):
        sealed = at_rest.seal(SECRET, "run", "kwargs")
    with pytest.raises(EncryptionError, match="encryption context header"):
        at_rest.open(damage(sealed), "run", "kwargs")


def test_the_header_is_a_json_object_as_text_or_base64() -> None:
    value = {"tenant": "acme", "n": 1}
    text = json.dumps(value)
    assert parse_header(text) == value
    assert parse_header(base64.b64encode(text.encode()).decode()) == value
    assert parse_header(base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")) == value
    for bad in ("not json", "[1, 2]", base64.b64encode(b"[1]").decode(), "{"):
        with pytest.raises(EncryptionError, match="X-Encryption-Context header must be"):
            parse_header(bad)


def test_a_run_gets_the_request_context_not_the_clients() -> None:
    configurable: dict[str, Any] = {CONTEXT_KEY: {"tenant": "spoofed"}, "x": 1}
    with context_scope({"tenant": "acme"}):
        with_encryption_context(configurable)
    assert configurable == {CONTEXT_KEY: {"tenant": "acme"}, "x": 1}
    with context_scope({}):  # a request without a context: nothing chosen by the client
        with_encryption_context(configurable)
    assert configurable == {"x": 1}
    scheduled = {CONTEXT_KEY: {"tenant": "acme"}}  # outside a request: a cron's run keeps it
    with_encryption_context(scheduled)
    assert scheduled == {CONTEXT_KEY: {"tenant": "acme"}}


def _app(encryption: Encryption, user: AuthUser | None) -> Starlette:
    async def show(request: Request) -> JSONResponse:
        return JSONResponse(current_context())

    inner = EncryptionScope(Starlette(routes=[Route("/ctx", show)]), lambda: encryption)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:  # as Authenticate does
        if user is not None:
            scope.setdefault("state", {})["auth_user"] = user
        await inner(scope, receive, send)

    return Starlette(routes=[Mount("/", app=app)])


def test_the_request_context_is_the_header_then_the_handler() -> None:
    enc = Encryption()
    seen: list[Any] = []

    @enc.context
    async def tenant(user: Any, ctx: EncryptionContext) -> dict[str, Any]:
        seen.append((ctx.model, ctx.field, dict(ctx.metadata)))
        return {**ctx.metadata, "tenant": user.tenant_id, "who": user["identity"]}

    header = {"X-Encryption-Context": json.dumps({"region": "eu", "tenant": "spoof"})}
    alice = AuthUser("alice", extra={"tenant_id": "acme"})
    with TestClient(_app(enc, alice)) as client:
        assert client.get("/ctx", headers=header).json() == \
            {"region": "eu", "tenant": "acme", "who": "alice"}
        assert client.get("/ctx").json() == {"tenant": "acme", "who": "alice"}
        bad = client.get("/ctx", headers={"X-Encryption-Context": "nope"})
        assert bad.status_code == 400 and "X-Encryption-Context" in bad.json()["detail"]
    assert seen[0] == (None, None, {"region": "eu", "tenant": "spoof"})
    with TestClient(_app(enc, None)) as client:  # no authentication: the header alone
        assert client.get("/ctx", headers=header).json() == {"region": "eu", "tenant": "spoof"}


@pytest.mark.parametrize("answer", ["raise", "not a dict"])
def test_a_failing_context_handler_is_a_500(answer: str) -> None:
    enc = Encryption()

    @enc.context
    async def broken(user: Any, ctx: EncryptionContext) -> Any:
        if answer == "raise":
            raise RuntimeError("token=hunter2")
        return ["not", "a", "dict"]

    with TestClient(_app(enc, AuthUser("alice"))) as client:
        res = client.get("/ctx")
    assert res.status_code == 500 and "hunter2" not in res.text
    assert res.json() == {"detail": "the encryption context handler failed"}
