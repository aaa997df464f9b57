"""The built-in auth (``TREADLE_AUTH=builtin``): API keys and JWT bearer tokens, each naming a
tenant and a role, for deployments that write no ``Auth`` of their own.

It is a ``langgraph_sdk.Auth`` like a user's, so the one authorization machinery runs it:
:func:`build_auth` registers its ``@auth.authenticate`` and one ``@auth.on`` handler
(:class:`~treadle.auth.roles.Rules`: the roles and the tenant scoping).

Credentials, in this order:

- ``x-api-key: tdl_...``: a key from ``treadle keys create`` (:mod:`treadle.store.api_keys`);
- ``Authorization: Bearer tdl_...``: the same;
- ``Authorization: Bearer <JWT>``: verified by :class:`~treadle.auth.jwt_bearer.JwtVerifier`;
  its ``sub`` is the identity, the claims ``TREADLE_JWT_TENANT_CLAIM`` (default ``tenant``)
  and ``TREADLE_JWT_ROLE_CLAIM`` (default ``role``: a role name, or a list of them, the
  strongest counting) give the tenant and the role.

The user it returns: ``{"identity": key id or sub, "display_name", "permissions": [role and
the roles it includes], "tenant_id", "role", "auth": "api_key" | "jwt"}``. A request without
valid credentials is refused with 401 (the detail says why, never repeating the credential).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from langgraph_sdk import Auth

from treadle.auth.jwt_bearer import JwtVerifier, unauthorized
from treadle.auth.roles import Rules, implied_roles, role_level
from treadle.config import Settings
from treadle.errors import ConfigError, InputError
from treadle.store.api_keys import KEY_PREFIX, ROLES, check_tenant
from treadle.store.base import Store
from treadle.store.encryption import AtRest

__all__ = ["build_auth", "refuse_sealed_tenant", "user_of"]


def user_of(identity: str, tenant: str, role: str, *, how: str,
            display_name: str | None = None) -> dict[str, Any]:
    """The user dict the built-in authenticate returns."""
    return {"identity": identity, "display_name": display_name or identity,
            "permissions": implied_roles(role), "tenant_id": tenant, "role": role,
            "auth": how, "is_authenticated": True}


def _header(headers: Any, name: str) -> str | None:
    """Header ``name`` (lower case) of ``headers``: LangGraph's ``dict[bytes, bytes]``, or a
    str mapping (Starlette's ``Headers`` is case-insensitive already)."""
    if isinstance(headers, dict):
        found = headers.get(name.encode("latin-1"), headers.get(name))
    elif isinstance(headers, Mapping):
        found = headers.get(name)
    else:
        return None
    if found is None:
        return None
    return found.decode("latin-1") if isinstance(found, bytes) else str(found)


def _role_claim(value: Any, claim: str) -> str:
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    level = role_level([n for n in names if isinstance(n, str)])
    if level < 0:
        raise unauthorized(f"invalid token: its {claim!r} claim names none of the roles "
                           f"{', '.join(ROLES)}")
    return ROLES[level]


def refuse_sealed_tenant(at_rest: AtRest) -> None:
    """ConfigError when the store encrypts metadata ``tenant_id``, which every query of the
    built-in auth filters on (SQL cannot compare an encrypted value)."""
    if at_rest.sealed_keys(["tenant_id"]):
        raise ConfigError("built-in auth scopes every query by metadata 'tenant_id', which "
                          "TREADLE_ENCRYPTED_METADATA_FIELDS encrypts: remove it from that list")


def build_auth(settings: Settings, store: Store) -> Auth:
    """The built-in auth over ``store``'s API keys and the JWT settings. A JWT setting that
    cannot work (a short secret, a JWKS URL over plain HTTP) is a ConfigError here, at start."""
    refuse_sealed_tenant(store.at_rest)
    verifier = JwtVerifier(settings)
    role_claim, tenant_claim = settings.jwt_role_claim, settings.jwt_tenant_claim
    auth = Auth()

    async def from_api_key(key: str) -> dict[str, Any]:
        found = await asyncio.to_thread(store.verify_api_key, key)
        if found is None:
            raise unauthorized("invalid API key: unknown, revoked or mistyped")
        return user_of(found.key_id, found.tenant_id, found.role, how="api_key",
                       display_name=found.name)

    async def from_jwt(token: str) -> dict[str, Any]:
        if not verifier.enabled:
            raise unauthorized("invalid credentials: not a treadle API key (JWTs are not "
                               "accepted here)")
        claims = await verifier.claims(token)
        try:
            tenant = check_tenant(claims.get(tenant_claim))
        except InputError:
            raise unauthorized(f"invalid token: its {tenant_claim!r} claim is missing or not "
                               "a tenant id") from None
        role = _role_claim(claims.get(role_claim), role_claim)
        name = claims.get("name") or claims.get("email")
        return user_of(str(claims["sub"]), tenant, role, how="jwt",
                       display_name=name if isinstance(name, str) else None)

    @auth.authenticate
    async def authenticate(headers: Any) -> dict[str, Any]:
        key = _header(headers, "x-api-key")
        if key is not None:
            return await from_api_key(key.strip())
        authorization = _header(headers, "authorization")
        if authorization is None:
            raise unauthorized("missing credentials: send an API key (x-api-key) or a "
                               "bearer token (Authorization: Bearer ...)")
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise unauthorized("invalid Authorization header: use 'Bearer <key or token>'")
        if credential.startswith(KEY_PREFIX):
            return await from_api_key(credential)
        return await from_jwt(credential)

    rules = Rules(store, require_approver_to_resume=settings.require_approver_to_resume)
    auth.on(rules.authorize)
    return auth
