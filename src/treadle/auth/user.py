"""The request principal: who ``@auth.authenticate`` said the caller is.

:class:`AuthUser` implements langgraph_sdk's ``BaseUser`` protocol (``identity``,
``display_name``, ``is_authenticated``, ``permissions``, item access, ``to_dict``) and
keeps every other field the handler returned (``user["tenant_id"]``). The authentication
middleware puts it in ``scope["state"]["auth_user"]``; handlers receive it as
``ctx.user``; runs receive :meth:`AuthUser.to_dict` as ``langgraph_auth_user``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from treadle.errors import ConfigError

__all__ = ["AuthUser", "user_from"]

_CORE = ("identity", "display_name", "is_authenticated", "permissions")


@dataclass(frozen=True)
class AuthUser:
    identity: str
    display_name: str = ""
    is_authenticated: bool = True
    permissions: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # the handler's other fields

    def __getitem__(self, key: str) -> Any:
        if key in _CORE:
            return getattr(self, key) if key != "permissions" else list(self.permissions)
        return self.extra[key]

    def __contains__(self, key: object) -> bool:
        return key in _CORE or key in self.extra

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def to_dict(self) -> dict[str, Any]:
        """The user as JSON (what runs receive as ``langgraph_auth_user``)."""
        return {**self.extra, "identity": self.identity, "display_name": self.display_name,
                "is_authenticated": self.is_authenticated,
                "permissions": list(self.permissions)}


def user_from(result: Any) -> AuthUser:
    """``@auth.authenticate``'s return value as an AuthUser: a string (the identity), a
    dict or an object with ``identity`` (and optionally ``display_name``,
    ``is_authenticated``, ``permissions``), or a ``(permissions, user)`` tuple;
    ConfigError otherwise (the server's handler is broken: a 500)."""
    if isinstance(result, tuple) and len(result) == 2:
        permissions, user = result
        base = user_from(user)
        return AuthUser(base.identity, base.display_name, base.is_authenticated,
                        _permissions(permissions), base.extra)
    if isinstance(result, AuthUser):
        return result
    if isinstance(result, str):
        if not result:
            raise ConfigError("authenticate returned an empty identity")
        return AuthUser(result, result)
    if isinstance(result, Mapping):
        doc = dict(result)
    elif hasattr(result, "identity"):
        doc = dict(result.to_dict()) if callable(getattr(result, "to_dict", None)) else {}
        for key in _CORE:
            if hasattr(result, key):
                doc[key] = getattr(result, key)
    else:
        raise ConfigError(f"authenticate returned {type(result).__name__}, not a user "
                           "(return a str, a dict with identity, or such an object)")
    identity = doc.pop("identity", None)
    if not isinstance(identity, str) or not identity:
        raise ConfigError("authenticate returned a user without a string identity")
    display = doc.pop("display_name", None)
    authenticated = doc.pop("is_authenticated", True)
    permissions = _permissions(doc.pop("permissions", ()))
    return AuthUser(identity, display if isinstance(display, str) else identity,
                    bool(authenticated), permissions, doc)


def _permissions(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not all(isinstance(p, str) for p in value):
        raise ConfigError("authenticate returned permissions that are not a list of strings")
    return tuple(value)
