"""What ``@auth.authenticate`` may return, as the request principal (treadle.auth.user)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from treadle.auth.user import AuthUser, user_from
from treadle.errors import ConfigError


@dataclass
class CustomUser:
    identity: str
    permissions: list[str] = field(default_factory=list)
    team: str = "t"

    def to_dict(self) -> dict[str, Any]:
        return {"identity": self.identity, "team": self.team}


def test_a_string_is_the_identity() -> None:
    user = user_from("alice")
    assert (user.identity, user.display_name, user.is_authenticated, user.permissions) == (
        "alice", "alice", True, ())


def test_a_dict_keeps_its_extra_fields() -> None:
    user = user_from({"identity": "u1", "permissions": ["read"], "display_name": "U",
                      "tenant_id": "acme"})
    assert user["tenant_id"] == "acme" and "tenant_id" in user and "nope" not in user
    assert user["permissions"] == ["read"] and user.permissions == ("read",)
    assert user.to_dict() == {"identity": "u1", "display_name": "U", "is_authenticated": True,
                              "permissions": ["read"], "tenant_id": "acme"}
    assert set(user) == {"identity", "display_name", "is_authenticated", "permissions",
                         "tenant_id"}


def test_an_object_with_identity() -> None:
    user = user_from(CustomUser("u2", ["admin"]))
    assert (user.identity, user.permissions, user["team"]) == ("u2", ("admin",), "t")


def test_a_permissions_user_tuple() -> None:
    user = user_from((["a", "b"], {"identity": "u3", "permissions": ["ignored"]}))
    assert (user.identity, user.permissions) == ("u3", ("a", "b"))


def test_an_auth_user_passes_through() -> None:
    user = AuthUser("x")
    assert user_from(user) is user


@pytest.mark.parametrize("bad", [None, 3, "", {"name": "no identity"}, {"identity": 5},
                                 {"identity": "x", "permissions": "admin"},
                                 (["a"], None)])
def test_anything_else_is_refused(bad: Any) -> None:
    with pytest.raises(ConfigError):
        user_from(bad)
