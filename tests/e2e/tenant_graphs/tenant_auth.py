"""Bearer tokens of two users of two tenants, given as the user's ``tenant_id``
(tests/e2e/test_encryption_tenants.py)."""

from __future__ import annotations

from langgraph_sdk import Auth

auth = Auth()

USERS = {"alice-token": ("alice", "acme"), "bob-token": ("bob", "zeta")}


@auth.authenticate
async def authenticate(authorization: str | None) -> dict[str, str]:
    found = USERS.get((authorization or "").removeprefix("Bearer "))
    if found is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="Invalid token")
    return {"identity": found[0], "tenant_id": found[1]}


@auth.on
async def allow(ctx: Auth.types.AuthContext, value: object) -> None:
    """Every authenticated user may do everything (`treadle serve` denies by default)."""
    return None
