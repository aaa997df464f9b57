"""Bearer tokens of two users of two tenants (tests/e2e/test_encryption_context.py)."""

from __future__ import annotations

from langgraph_sdk import Auth

auth = Auth()

USERS = {"alice-token": "alice", "bob-token": "bob"}


@auth.authenticate
async def authenticate(authorization: str | None) -> Auth.types.MinimalUserDict:
    user = USERS.get((authorization or "").removeprefix("Bearer "))
    if user is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    return {"identity": user}


@auth.on
async def allow(ctx: Auth.types.AuthContext, value: object) -> None:
    """Every authenticated user may do everything (`treadle serve` denies by default)."""
    return None
