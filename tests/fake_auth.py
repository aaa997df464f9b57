"""A stand-in for the authentication middleware, for tests of what routes do with the
principal it leaves in the request's state (``auth_user``, ``auth_tenant``)."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FakeAuth", "User"]


@dataclass(frozen=True)
class User:
    """What the authentication middleware leaves in scope["state"]["auth_user"]."""

    identity: str
    permissions: tuple[str, ...] = ()


class FakeAuth:
    """Stands in for the authentication middleware (another module's): it sets the
    principal from an ``x-user: name:permission,...:tenant`` header, in the request's
    own state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", ()))
        who = headers.get(b"x-user")
        if who is not None and scope["type"] in ("http", "websocket"):
            name, perms, tenant = (who.decode() + "::").split(":")[:3]
            scope["state"]["auth_user"] = User(name, tuple(p for p in perms.split(",") if p))
            if tenant:
                scope["state"]["auth_tenant"] = tenant
        await self.app(scope, receive, send)
