"""Auth as the LangGraph docs write it: bearer tokens from a table; every resource gets
its creator as metadata.owner and is filtered to it; store namespaces are per user."""

from __future__ import annotations

from typing import Any

from langgraph_sdk import Auth

auth = Auth()

VALID_TOKENS: dict[str, dict[str, Any]] = {
    "alice-token": {"id": "alice", "name": "Alice", "permissions": ["write"]},
    "bob-token": {"id": "bob", "name": "Bob", "permissions": []},
    "carol-token": {"id": "carol", "name": "Carol (another company)", "permissions": []},
}


@auth.authenticate
async def get_current_user(authorization: str | None) -> Auth.types.MinimalUserDict:
    assert authorization
    scheme, token = authorization.split()
    assert scheme.lower() == "bearer"
    if token not in VALID_TOKENS:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    user = VALID_TOKENS[token]
    return {"identity": user["id"], "display_name": user["name"],
            "permissions": user["permissions"]}


@auth.on
async def add_owner(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, str]:
    filters = {"owner": ctx.user.identity}
    metadata = value.setdefault("metadata", {})
    metadata.update(filters)
    return filters


@auth.on.assistants
async def on_assistants(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, Any]:
    if ctx.action in ("create", "update"):
        value.setdefault("metadata", {})
        if value["metadata"] is None:
            value["metadata"] = {}
        value["metadata"]["owner"] = ctx.user.identity
    # the graphs' default assistants (created by the system) are everyone's
    return {"$or": [{"owner": ctx.user.identity}, {"created_by": "system"}]}


@auth.on.store()
async def on_store(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    namespace = value.get("namespace") or ()
    value["namespace"] = (ctx.user.identity, *namespace)
