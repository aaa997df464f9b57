"""Auth with handlers for threads only: the other resources depend on default deny."""

from __future__ import annotations

from typing import Any

from langgraph_sdk import Auth

auth = Auth()


@auth.authenticate
async def authenticate(headers: dict[bytes, bytes]) -> str:
    token = headers.get(b"x-api-key")
    if token != b"secret-key":
        raise Auth.exceptions.HTTPException(status_code=401, detail="bad key")
    return "carol"


@auth.on.threads
async def on_threads(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    return None
