"""A custom Auth with tenants and admins, for the audit log and factories: bearer tokens
from a table; threads and assistants are stamped with the user's tenant and filtered to
it; nothing else has a handler (under default deny, crons and the store are refused)."""

from __future__ import annotations

from typing import Any

from langgraph_sdk import Auth

auth = Auth()

USERS: dict[str, dict[str, Any]] = {
    "ann-token": {"identity": "ann", "tenant_id": "a", "permissions": ["admin"]},
    "al-token": {"identity": "al", "tenant_id": "a", "permissions": ["write"]},
    "bea-token": {"identity": "bea", "tenant_id": "b", "permissions": ["admin"]},
}


@auth.authenticate
async def authenticate(authorization: str | None) -> dict[str, Any]:
    token = (authorization or "").removeprefix("Bearer ")
    if token not in USERS:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    return USERS[token]


@auth.on.threads
async def on_threads(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, str]:
    tenant = ctx.user["tenant_id"]
    if ctx.action in ("create", "update"):
        value["metadata"] = {**(value.get("metadata") or {}), "tenant_id": tenant}
    return {"tenant_id": tenant}


@auth.on.assistants
async def on_assistants(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, Any]:
    tenant = ctx.user["tenant_id"]
    if ctx.action in ("create", "update"):
        value["metadata"] = {**(value.get("metadata") or {}), "tenant_id": tenant}
    return {"$or": [{"tenant_id": tenant}, {"created_by": "system"}]}
