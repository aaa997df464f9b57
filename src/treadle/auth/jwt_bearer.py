"""JWT bearer tokens for the built-in auth: verified with PyJWT, never decoded unverified.

A token is signed either with the shared secret ``TREADLE_JWT_SECRET`` (HS256) or with a key
of the JWKS at ``TREADLE_JWT_JWKS_URL`` (RS*, PS*, ES*, EdDSA; PyJWT's ``PyJWKClient`` fetches
and caches it, and fetches again for a key id it has not seen, so key rotation at the
issuer needs no restart). The algorithm list follows the key source, so a token cannot pick
its own (no ``none``; no HS256 token "signed" with a JWKS public key). The JWKS is reused
for :data:`JWKS_LIFESPAN` seconds; a key id it lacks fetches it again, at most once per
:data:`JWKS_REFRESH_COOLDOWN` seconds. ``exp`` is always
required; ``iss`` and ``aud`` when ``TREADLE_JWT_ISSUER`` / ``TREADLE_JWT_AUDIENCE`` are set.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any
from urllib.parse import urlsplit

import jwt
from langgraph_sdk.auth.exceptions import HTTPException

from treadle.config import Settings
from treadle.errors import ConfigError

__all__ = ["ASYMMETRIC", "JWKS_LIFESPAN", "JWKS_REFRESH_COOLDOWN", "JwtVerifier", "unauthorized"]

#: What a JWKS key may sign with (PyJWT's names).
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")
#: RFC 7518 3.2: an HS256 key is at least as long as the hash.
_MIN_SECRET_BYTES = 32
#: Seconds the JWKS is reused before it is fetched again (a key the issuer withdrew stops
#: verifying after this long).
JWKS_LIFESPAN = 300.0
#: Seconds after a fetch before an unknown key id may fetch again: tokens naming random key
#: ids cannot make the server hammer the issuer.
JWKS_REFRESH_COOLDOWN = 30.0


def unauthorized(detail: str) -> HTTPException:
    """A 401 saying ``detail`` (which never repeats the credential)."""
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _check_jwks_url(url: str) -> str:
    """Keys fetched over plain HTTP could be swapped on the way (and then any token
    forged): HTTPS, except on the machine itself."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if parts.scheme == "https" or (parts.scheme == "http" and loopback):
        return url
    raise ConfigError("TREADLE_JWT_JWKS_URL must be an https:// URL (http:// only for "
                      "localhost)")


class JwtVerifier:
    """Verifies JWT bearer tokens as the settings say; its :meth:`claims` raise a 401
    :class:`HTTPException` (503 when the JWKS cannot be fetched) for a token they refuse."""

    def __init__(self, settings: Settings) -> None:
        self.secret: bytes | None = None
        if settings.jwt_secret is not None and settings.jwt_secret.get_secret_value():
            self.secret = settings.jwt_secret.get_secret_value().encode("utf-8")
            if len(self.secret) < _MIN_SECRET_BYTES:
                raise ConfigError(f"TREADLE_JWT_SECRET must be at least {_MIN_SECRET_BYTES} "
                                  "bytes (an HS256 key as long as its hash): use a longer one")
        self.jwks: jwt.PyJWKClient | None = None
        if settings.jwt_jwks_url:
            self.jwks = jwt.PyJWKClient(_check_jwks_url(settings.jwt_jwks_url),
                                        cache_keys=False, lifespan=JWKS_LIFESPAN, timeout=10,
                                        cooldown_duration=JWKS_REFRESH_COOLDOWN)
        self.issuer = settings.jwt_issuer or None
        self.audience = settings.jwt_audience or None
        if not self.enabled and (self.issuer or self.audience):
            raise ConfigError("TREADLE_JWT_ISSUER / TREADLE_JWT_AUDIENCE are set but no JWT "
                              "key is: set TREADLE_JWT_SECRET or TREADLE_JWT_JWKS_URL")

    @property
    def enabled(self) -> bool:
        """Whether JWTs are accepted at all (a secret or a JWKS URL is set)."""
        return self.secret is not None or self.jwks is not None

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise unauthorized("invalid credentials: not a treadle API key nor a JWT") from None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and self.secret is not None:
            key, algorithms = self.secret, ["HS256"]
        elif alg in ASYMMETRIC and self.jwks is not None:
            key, algorithms = await self._jwks_key(token), list(ASYMMETRIC)
        else:
            raise unauthorized(f"invalid token: algorithm {alg!r} is not accepted here")
        required = ["exp", "sub"] + (["iss"] if self.issuer else []) + (
            ["aud"] if self.audience else [])
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=algorithms, issuer=self.issuer, audience=self.audience,
                options={"require": required, "verify_aud": self.audience is not None})
        except jwt.ExpiredSignatureError:
            raise unauthorized("invalid token: it has expired") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("invalid token: its signature does not verify") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("invalid token: wrong issuer (iss)") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("invalid token: wrong audience (aud)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"invalid token: it has no {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:  # malformed, not yet valid, ...: the class says which
            raise unauthorized(f"invalid token ({type(exc).__name__})") from None
        return claims

    async def _jwks_key(self, token: str) -> Any:
        assert self.jwks is not None
        try:  # PyJWKClient fetches over blocking HTTP: off the event loop
            found = await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            raise HTTPException(503, detail="the JWKS that verifies tokens cannot be fetched; "
                                "try again later") from None
        except jwt.PyJWTError:
            raise unauthorized("invalid token: no key of the JWKS matches it") from None
        return found.key
