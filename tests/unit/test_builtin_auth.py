"""The built-in auth's ``@auth.authenticate`` (``treadle.auth.builtin``), called as the
authentication middleware calls it (``headers``: LangGraph's ``dict[bytes, bytes]``): API
keys, JWTs signed with a shared secret, and JWTs signed by a key of a JWKS served here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from langgraph_sdk import Auth
from langgraph_sdk.auth.exceptions import HTTPException
from starlette.datastructures import Headers

from treadle.auth import jwt_bearer
from treadle.auth.builtin import build_auth
from treadle.config import Settings
from treadle.errors import ConfigError
from treadle.store import Store, open_store

SECRET = "s" * 40
ISSUER, AUDIENCE = "https://issuer.example", "treadle-api"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/a.db")
    try:
        yield s
    finally:
        s.close()


def authenticator(auth: Auth) -> Callable[..., Awaitable[Any]]:
    """The ``@auth.authenticate`` handler of ``auth``."""
    assert auth._authenticate_handler is not None
    return auth._authenticate_handler


async def authenticate(store: Store, headers: dict[Any, Any], **settings: Any) -> Any:
    auth = build_auth(Settings(auth="builtin", **settings), store)
    return await authenticator(auth)(headers=headers)


async def refused(store: Store, headers: dict[Any, Any], *, status: int = 401,
                  **settings: Any) -> str:
    """The refusal's detail; it never repeats what was sent."""
    with pytest.raises(HTTPException) as caught:
        await authenticate(store, headers, **settings)
    assert caught.value.status_code == status
    detail = str(caught.value.detail)
    for value in headers.values():
        text = value.decode() if isinstance(value, bytes) else value
        credential = text.split(" ", 1)[-1]
        assert len(credential) < 8 or credential not in detail
    return detail


def bearer(token: str) -> dict[bytes, bytes]:
    return {b"authorization": f"Bearer {token}".encode()}


# --- API keys -----------------------------------------------------------------------------


async def test_an_api_key_in_x_api_key_or_as_a_bearer_token(store: Store) -> None:
    record, key = store.create_api_key("acme", "approver", "ci")
    want = {"identity": record.key_id, "display_name": "ci", "tenant_id": "acme",
            "role": "approver", "permissions": ["approver", "runner", "viewer"],
            "auth": "api_key", "is_authenticated": True}
    assert await authenticate(store, {b"x-api-key": key.encode()}) == want
    assert await authenticate(store, bearer(key)) == want
    assert await authenticate(store, {b"authorization": f"bearer   {key} ".encode()}) == want
    assert await authenticate(store, {"x-api-key": key}) == want  # str headers too
    starlette = Headers(raw=[(b"x-api-key", key.encode())])  # a Starlette request's headers
    assert await authenticate(store, cast(Any, starlette)) == want


async def test_revoked_wrong_and_missing_keys_are_refused(store: Store) -> None:
    record, key = store.create_api_key("acme", "admin")
    other = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert "invalid API key" in await refused(store, {b"x-api-key": other.encode()})
    assert "invalid API key" in await refused(store, bearer(other))
    assert "invalid API key" in await refused(store, {b"x-api-key": b""})
    store.revoke_api_key(record.key_id)
    assert "invalid API key" in await refused(store, {b"x-api-key": key.encode()})
    assert "invalid API key" in await refused(store, bearer(key))
    assert "missing credentials" in await refused(store, {})
    assert "missing credentials" in await refused(store, {b"cookie": b"k=v"})
    assert "use 'Bearer" in await refused(store, {b"authorization": b"Basic dXNlcjpwYXNz"})
    assert "use 'Bearer" in await refused(store, {b"authorization": b"Bearer "})


async def test_a_bearer_jwt_is_refused_when_no_jwt_key_is_set(store: Store) -> None:
    token = jwt.encode({"sub": "u", "exp": time.time() + 60}, SECRET, algorithm="HS256")
    assert "JWTs are not accepted" in await refused(store, bearer(token))


# --- JWTs signed with the shared secret (HS256) --------------------------------------------


def hs256(claims: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    base = {"sub": "alice", "tenant": "acme", "role": "runner", "exp": time.time() + 300}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256", headers=headers or None)


async def test_a_valid_jwt_gives_its_subject_tenant_and_role(store: Store) -> None:
    user = await authenticate(store, bearer(hs256({"name": "Alice"})), jwt_secret=SECRET)
    assert user == {"identity": "alice", "display_name": "Alice", "tenant_id": "acme",
                    "role": "runner", "permissions": ["runner", "viewer"], "auth": "jwt",
                    "is_authenticated": True}


async def test_claim_names_issuer_and_audience_follow_the_settings(store: Store) -> None:
    settings: dict[str, Any] = {"jwt_secret": SECRET, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE,
                "jwt_role_claim": "https://x/roles", "jwt_tenant_claim": "org"}
    token = hs256({"iss": ISSUER, "aud": [AUDIENCE, "other"], "org": "o-1",
                   "https://x/roles": ["viewer", "admin", "unknown"]})
    user = await authenticate(store, bearer(token), **settings)
    assert (user["tenant_id"], user["role"]) == ("o-1", "admin")  # the strongest role named
    wrong_iss = hs256({"iss": "https://evil", "aud": AUDIENCE, "org": "o", "https://x/roles": "admin"})
    assert "wrong issuer" in await refused(store, bearer(wrong_iss), **settings)
    wrong_aud = hs256({"iss": ISSUER, "aud": "other", "org": "o", "https://x/roles": "admin"})
    assert "wrong audience" in await refused(store, bearer(wrong_aud), **settings)
    no_iss = hs256({"aud": AUDIENCE, "org": "o", "https://x/roles": "admin"})
    assert "'iss'" in await refused(store, bearer(no_iss), **settings)
    no_aud = hs256({"iss": ISSUER, "org": "o", "https://x/roles": "admin"})
    assert "'aud'" in await refused(store, bearer(no_aud), **settings)


@pytest.mark.parametrize(("token", "says"), [
    (lambda: hs256({"exp": time.time() - 5}), "expired"),
    (lambda: hs256({}, secret="x" * 40), "signature does not verify"),
    (lambda: hs256({"exp": None}), "'exp'"),
    (lambda: jwt.encode({"sub": "a", "tenant": "t", "role": "admin"}, SECRET, algorithm="HS256"),
     "'exp'"),
    (lambda: hs256({"sub": None}), "'sub'"),
    (lambda: hs256({"tenant": None}), "'tenant' claim is missing"),
    (lambda: hs256({"tenant": "a.b"}), "not a tenant id"),
    (lambda: hs256({"role": "owner"}), "names none of the roles"),
    (lambda: hs256({"role": None}), "names none of the roles"),
    (lambda: hs256({"nbf": time.time() + 600}), "ImmatureSignatureError"),
    (lambda: jwt.encode({"sub": "a", "tenant": "t", "role": "admin", "exp": time.time() + 60},
                        "", algorithm="none"), "algorithm 'none'"),
    (lambda: jwt.encode({"sub": "a", "tenant": "t", "role": "admin", "exp": time.time() + 60},
                        SECRET * 2, algorithm="HS512"), "algorithm 'HS512'"),
    (lambda: "not.a.jwt", "not a treadle API key nor a JWT"),
    (lambda: "tdl_nope", "invalid API key"),
])
async def test_bad_jwts_are_refused_saying_why(store: Store, token: Any, says: str) -> None:
    assert says in await refused(store, bearer(token()), jwt_secret=SECRET)


def test_settings_that_cannot_work_fail_at_start(store: Store) -> None:
    with pytest.raises(ConfigError, match="at least 32 bytes"):
        build_auth(Settings(auth="builtin", jwt_secret="short"), store)
    with pytest.raises(ConfigError, match="https://"):
        build_auth(Settings(auth="builtin", jwt_jwks_url="http://idp.example/jwks"), store)
    with pytest.raises(ConfigError, match="no JWT key is"):
        build_auth(Settings(auth="builtin", jwt_issuer=ISSUER), store)
    for fine in ("https://idp.example/.well-known/jwks.json", "http://127.0.0.1:1/jwks",
                 "http://localhost:1/jwks", "http://[::1]:1/jwks"):
        build_auth(Settings(auth="builtin", jwt_jwks_url=fine), store)


def test_the_secret_never_shows_in_settings_or_their_errors() -> None:
    settings = Settings(auth="builtin", jwt_secret=SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())
    from treadle.config import get_settings

    with pytest.raises(ConfigError) as caught:
        get_settings(jwt_secret=["not", SECRET])
    assert SECRET not in str(caught.value) and "--jwt-secret" not in str(caught.value)


# --- JWTs signed by a key of a JWKS (RS256), served here ------------------------------------


class Jwks:
    """A JWKS endpoint on a free loopback port, serving the public halves of ``keys``."""

    def __init__(self) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                jwks.fetches += 1
                body = json.dumps({"keys": [
                    {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(k.public_key())),
                     "kid": kid, "alg": "RS256", "use": "sig"}
                    for kid, k in jwks.keys.items()]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, kid: str) -> rsa.RSAPrivateKey:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self.keys[kid]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    served = Jwks()
    try:
        yield served
    finally:
        served.close()


def rs256(key: rsa.RSAPrivateKey, kid: str, **claims: Any) -> str:
    base = {"sub": "bob", "tenant": "acme", "role": "viewer", "exp": time.time() + 300,
            "iss": ISSUER}
    return jwt.encode({**base, **claims}, key, algorithm="RS256", headers={"kid": kid})


async def test_a_jwt_signed_by_a_jwks_key(store: Store, jwks: Jwks) -> None:
    key = jwks.add("k1")
    settings: dict[str, Any] = {"jwt_jwks_url": jwks.url, "jwt_issuer": ISSUER}
    user = await authenticate(store, bearer(rs256(key, "k1")), **settings)
    assert (user["identity"], user["tenant_id"], user["permissions"]) == ("bob", "acme",
                                                                          ["viewer"])
    assert "expired" in await refused(store, bearer(rs256(key, "k1", exp=time.time() - 5)),
                                      **settings)
    assert "wrong issuer" in await refused(store, bearer(rs256(key, "k1", iss="x")), **settings)
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature does not verify" in await refused(store, bearer(rs256(impostor, "k1")),
                                                        **settings)
    assert "no key of the JWKS" in await refused(store, bearer(rs256(impostor, "k9")),
                                                 **settings)


async def test_a_key_added_to_the_jwks_is_fetched_without_a_restart(
        store: Store, jwks: Jwks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwt_bearer, "JWKS_REFRESH_COOLDOWN", 0.0)
    first = jwks.add("k1")
    handler = authenticator(build_auth(Settings(auth="builtin", jwt_jwks_url=jwks.url), store))
    assert (await handler(headers=bearer(rs256(first, "k1"))))["identity"] == "bob"
    second = jwks.add("k2")  # the issuer rotates its key
    user = await handler(headers=bearer(rs256(second, "k2", sub="carol")))
    assert user["identity"] == "carol"
    assert jwks.fetches == 2


async def test_unknown_key_ids_do_not_refetch_within_the_cooldown(store: Store,
                                                                 jwks: Jwks) -> None:
    key = jwks.add("k1")
    handler = authenticator(build_auth(Settings(auth="builtin", jwt_jwks_url=jwks.url), store))
    await handler(headers=bearer(rs256(key, "k1")))
    for kid in ("x1", "x2", "x3"):
        with pytest.raises(HTTPException):
            await handler(headers=bearer(rs256(key, kid)))
    assert jwks.fetches == 1


async def test_no_hs256_token_passes_as_signed_by_the_jwks(store: Store, jwks: Jwks) -> None:
    """Algorithm confusion: a token 'signed' with HS256 under the JWKS's public key text."""
    jwks.add("k1")
    public = jwt.algorithms.RSAAlgorithm.to_jwk(jwks.keys["k1"].public_key())
    forged = jwt.encode({"sub": "x", "tenant": "acme", "role": "admin", "exp": time.time() + 60},
                        public.encode() * 2, algorithm="HS256", headers={"kid": "k1"})
    assert "algorithm 'HS256'" in await refused(store, bearer(forged), jwt_jwks_url=jwks.url)


async def test_an_unreachable_jwks_is_a_503_not_a_401(store: Store, jwks: Jwks) -> None:
    key = jwks.add("k1")
    url = jwks.url
    jwks.close()
    assert "cannot be fetched" in await refused(store, bearer(rs256(key, "k1")), status=503,
                                                jwt_jwks_url=url)
