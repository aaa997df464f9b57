"""Bearer tokens from a table (tests/e2e/test_http_app.py)."""

from __future__ import annotations

from langgraph_sdk import Auth

auth = Auth()
TOKENS = {"alice-token": ("alice", ["write"])}


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or token not in TOKENS:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    identity, permissions = TOKENS[token]
    return {"identity": identity, "permissions": permissions}
