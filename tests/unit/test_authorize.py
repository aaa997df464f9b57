"""Handler resolution and decisions (treadle.auth.authorize), with real langgraph_sdk Auths."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langgraph_sdk import Auth

from treadle.auth.authorize import Authorizer, Decision, decision
from treadle.auth.user import AuthUser
from treadle.errors import AccessFilterError

USER = AuthUser("alice", permissions=("p",))


def _named(auth: Auth, name: str, result: Any = None) -> Any:
    async def handler(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> Any:
        value.setdefault("seen", []).append(name)
        value["ctx"] = (ctx.user.identity, list(ctx.permissions), ctx.resource, ctx.action)
        return result

    return handler


def _decide(authorizer: Authorizer, resource: str, action: str,
            value: dict[str, Any] | None = None) -> tuple[Decision, dict[str, Any]]:
    value = {} if value is None else value
    return asyncio.run(authorizer.authorize(USER, resource, action, value)), value


def test_the_most_specific_handler_wins() -> None:
    auth = Auth()
    auth.on(_named(auth, "global"))
    auth.on.threads(_named(auth, "threads"))
    auth.on.threads.create(_named(auth, "threads.create"))
    auth.on(actions="read")(_named(auth, "any.read"))
    authorizer = Authorizer(auth, default_deny=True)
    assert _decide(authorizer, "threads", "create")[1]["seen"] == ["threads.create"]
    assert _decide(authorizer, "threads", "update")[1]["seen"] == ["threads"]
    assert _decide(authorizer, "threads", "read")[1]["seen"] == ["threads"]
    assert _decide(authorizer, "assistants", "read")[1]["seen"] == ["any.read"]
    _, value = _decide(authorizer, "crons", "delete")
    assert value["seen"] == ["global"]
    assert value["ctx"] == ("alice", ["p"], "crons", "delete")


@pytest.mark.parametrize("deny", [True, False])
def test_no_handler_is_default_deny_or_allow(deny: bool) -> None:
    auth = Auth()
    auth.on.threads(_named(auth, "threads"))
    authorizer = Authorizer(auth, default_deny=deny)
    assert _decide(authorizer, "assistants", "read")[0] == Decision(not deny)
    assert _decide(authorizer, "threads", "read")[0] == Decision(True)


def test_handlers_change_the_value() -> None:
    auth = Auth()

    @auth.on.threads.create
    async def owner(ctx: Auth.types.AuthContext, value: Auth.types.ThreadsCreate
                    ) -> dict[str, str]:
        value["metadata"]["owner"] = ctx.user.identity
        return {"owner": ctx.user.identity}

    decided, value = _decide(Authorizer(auth, default_deny=True), "threads", "create",
                             {"metadata": {}})
    assert value["metadata"] == {"owner": "alice"}
    assert decided == Decision(True, {"owner": "alice"})


@pytest.mark.parametrize(("result", "expected"), [
    (None, Decision(True)), (True, Decision(True)), (False, Decision(False)),
    ({}, Decision(True)), ({"a": 1}, Decision(True, {"a": 1})),
    ({"$or": [{"a": 1}, {"b": {"$contains": "x"}}]},
     Decision(True, {"$or": [{"a": 1}, {"b": {"$contains": "x"}}]})),
])
def test_answers(result: Any, expected: Decision) -> None:
    assert decision(result, "threads.read") == expected


@pytest.mark.parametrize("result", [1, "yes", ["a"], {"a": {"$ne": 1}}, {"$nor": []}])
def test_a_bad_answer_is_an_error_never_an_allow(result: Any) -> None:
    with pytest.raises(AccessFilterError, match="threads.read handler"):
        decision(result, "threads.read")
