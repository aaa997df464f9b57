"""The built-in auth's handler (``treadle.auth.roles``), called as the authorization
machinery calls it: every role x action, the tenant filters, the forced metadata, the
store's namespaces, and resuming an interrupt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk.auth.types import AuthContext

from treadle.auth.builtin import build_auth, user_of
from treadle.config import Settings
from treadle.store import Store, open_store
from treadle.store.assistant_records import Assistant
from treadle.store.thread_records import Thread

ROLES = ("viewer", "runner", "approver", "admin")

# The weakest role allowed each (resource, action), as docs/security.md states it.
WEAKEST = {
    ("threads", "read"): "viewer", ("threads", "search"): "viewer",
    ("threads", "create"): "runner", ("threads", "update"): "runner",
    ("threads", "delete"): "runner", ("threads", "create_run"): "runner",
    ("assistants", "read"): "viewer", ("assistants", "search"): "viewer",
    ("assistants", "create"): "admin", ("assistants", "update"): "admin",
    ("assistants", "delete"): "admin",
    ("crons", "read"): "viewer", ("crons", "search"): "viewer",
    ("crons", "create"): "runner", ("crons", "update"): "runner",
    ("crons", "delete"): "runner",
    ("store", "get"): "viewer", ("store", "search"): "viewer",
    ("store", "list_namespaces"): "viewer", ("store", "put"): "runner",
    ("store", "delete"): "runner",
    # Not a (resource, action) LangGraph defines: closed below admin.
    ("runs", "create"): "admin", ("threads", "frobnicate"): "admin",
}
OWN = {"tenant_id": "t1"}
VISIBLE_ASSISTANTS = {"$or": [OWN, {"created_by": "system"}]}


class User:
    """A user as the machinery passes it (``BaseUser``: attributes and item access)."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.identity: str = doc["identity"]
        self.display_name: str = doc.get("display_name", self.identity)
        self.is_authenticated = True
        self.permissions: list[str] = list(doc.get("permissions", ()))

    def __getitem__(self, key: str) -> Any:
        return self.doc[key]

    def __contains__(self, key: str) -> bool:
        return key in self.doc

    def __iter__(self) -> Iterator[str]:
        return iter(self.doc)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/a.db")
    try:
        yield s
    finally:
        s.close()


def ctx(role: str, resource: str, action: str, tenant: str | None = "t1") -> AuthContext:
    doc = user_of("someone", tenant or "", role, how="api_key")
    if tenant is None:
        del doc["tenant_id"]
    user = User(doc)
    return AuthContext(permissions=user.permissions, user=user, resource=resource,  # type: ignore[arg-type]
                       action=action)  # type: ignore[arg-type]


async def decide(store: Store, context: AuthContext, value: Any = None, **settings: Any) -> Any:
    auth = build_auth(Settings(auth="builtin", **settings), store)
    (handler,) = auth._global_handlers
    assert not auth._handlers  # one handler covers every (resource, action)
    return await handler(ctx=context, value={} if value is None else value)


def _value(resource: str) -> dict[str, Any]:
    return {"namespace": ("ns",), "key": "k"} if resource == "store" else {}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("resource", "action"), sorted(WEAKEST))
async def test_every_role_and_action(store: Store, role: str, resource: str, action: str) -> None:
    result = await decide(store, ctx(role, resource, action), _value(resource))
    allowed = ROLES.index(role) >= ROLES.index(WEAKEST[resource, action])
    if not allowed:
        assert result is False
    elif resource == "store":
        assert result is None
    elif resource == "assistants" and action in ("read", "search"):
        assert result == VISIBLE_ASSISTANTS
    else:
        assert result == OWN


@pytest.mark.parametrize(("resource", "action"), sorted(WEAKEST))
async def test_a_user_without_a_tenant_may_do_nothing(store: Store, resource: str,
                                                      action: str) -> None:
    assert await decide(store, ctx("admin", resource, action, tenant=None),
                        _value(resource)) is False


async def test_permissions_are_the_role_and_the_roles_it_includes() -> None:
    assert user_of("k", "t", "viewer", how="api_key")["permissions"] == ["viewer"]
    assert user_of("k", "t", "approver", how="jwt")["permissions"] == [
        "approver", "runner", "viewer"]
    assert "admin" in user_of("k", "t", "admin", how="jwt")["permissions"]


@pytest.mark.parametrize(("resource", "action"), [
    ("threads", "create"), ("threads", "create_run"), ("crons", "create")])
async def test_create_forces_the_tenant_into_metadata(store: Store, resource: str,
                                                      action: str) -> None:
    value: dict[str, Any] = {"metadata": {"tenant_id": "t2", "owner": "me"}}
    assert await decide(store, ctx("runner", resource, action), value) == OWN
    assert value["metadata"] == {"tenant_id": "t1", "owner": "me"}
    bare: dict[str, Any] = {}
    assert await decide(store, ctx("runner", resource, action), bare) == OWN
    assert bare["metadata"] == {"tenant_id": "t1"}


@pytest.mark.parametrize("resource", ["threads", "crons", "assistants"])
async def test_an_update_cannot_move_a_resource_to_another_tenant(store: Store,
                                                                  resource: str) -> None:
    value: dict[str, Any] = {"metadata": {"tenant_id": "t2", "x": 1}}
    assert await decide(store, ctx("admin", resource, "update"), value) == OWN
    assert value["metadata"] == {"tenant_id": "t1", "x": 1}
    without: dict[str, Any] = {"thread_id": "th"}
    await decide(store, ctx("admin", resource, "update"), without)
    assert "metadata" not in without  # nothing to patch: nothing added


async def test_no_tenant_may_make_an_assistant_the_systems(store: Store) -> None:
    created: dict[str, Any] = {"graph_id": "g", "metadata": {"created_by": "system"}}
    assert await decide(store, ctx("admin", "assistants", "create"), created) == OWN
    assert created["metadata"] == {"tenant_id": "t1"}
    patched: dict[str, Any] = {"metadata": {"created_by": "system", "k": "v"}}
    assert await decide(store, ctx("admin", "assistants", "update"), patched) == OWN
    assert patched["metadata"] == {"tenant_id": "t1", "k": "v"}
    # and the system's assistants are read-only: updates and deletes see the tenant's only
    assert await decide(store, ctx("admin", "assistants", "delete")) == OWN


@pytest.mark.parametrize(("action", "namespace", "scoped"), [
    ("put", ("users", "u1"), ("t1", "users", "u1")),
    ("get", ["users"], ("t1", "users")),
    ("delete", ("a",), ("t1", "a")),
    ("search", (), ("t1",)),
    ("list_namespaces", None, ("t1",)),
    ("list_namespaces", ("users",), ("t1", "users")),
])
async def test_store_namespaces_move_under_the_tenant(store: Store, action: str, namespace: Any,
                                                      scoped: tuple[str, ...]) -> None:
    value: dict[str, Any] = {"namespace": namespace, "key": "k"}
    assert await decide(store, ctx("runner", "store", action), value) is None
    assert value["namespace"] == scoped


async def test_listing_namespaces_counts_the_tenant_in_max_depth(store: Store) -> None:
    value: dict[str, Any] = {"namespace": None, "max_depth": 2, "suffix": None}
    await decide(store, ctx("viewer", "store", "list_namespaces"), value)
    assert value == {"namespace": ("t1",), "max_depth": 3, "suffix": None}
    unbounded: dict[str, Any] = {"namespace": None, "max_depth": None}
    await decide(store, ctx("viewer", "store", "list_namespaces"), unbounded)
    assert unbounded["max_depth"] is None


# --- resuming an interrupt (an approval gate) -------------------------------------------------

RESUME = {"thread_id": "th", "kwargs": {"command": {"resume": "yes"}}}
GOTO = {"thread_id": "th", "kwargs": {"command": {"goto": "act"}}}
UPDATE_ONLY = {"thread_id": "th", "kwargs": {"command": {"update": {"x": 1}, "resume": None}}}
PLAIN = {"thread_id": "th", "kwargs": {"input": {"x": 1}}}


@pytest.mark.parametrize(("value", "needs_approver"), [
    (RESUME, True), (GOTO, True), (UPDATE_ONLY, False), (PLAIN, False),
    ({"thread_id": "th", "command": {"resume": 0}}, True),  # the command outside kwargs too
])
@pytest.mark.parametrize("role", ROLES)
async def test_a_run_that_resumes_needs_an_approver(store: Store, value: dict[str, Any],
                                                    needs_approver: bool, role: str) -> None:
    result = await decide(store, ctx(role, "threads", "create_run"), dict(value))
    weakest = "approver" if needs_approver else "runner"
    assert (result is not False) == (ROLES.index(role) >= ROLES.index(weakest))


async def test_runners_may_resume_when_the_setting_is_off(store: Store) -> None:
    assert await decide(store, ctx("runner", "threads", "create_run"), dict(RESUME),
                        require_approver_to_resume=False) == OWN


@pytest.mark.parametrize("status", ["interrupted", "idle", "error"])
@pytest.mark.parametrize("role", ["runner", "approver"])
async def test_a_state_update_of_an_interrupted_thread_needs_an_approver(
        store: Store, status: str, role: str) -> None:
    store.put_thread(Thread("th", metadata=OWN, status=status))
    state_update = {"thread_id": "th"}  # what LangGraph passes for POST /threads/{id}/state
    result = await decide(store, ctx(role, "threads", "update"), state_update)
    assert result == (False if (status, role) == ("interrupted", "runner") else OWN)
    # a metadata patch or a cancel is not a resume
    assert await decide(store, ctx(role, "threads", "update"),
                        {"thread_id": "th", "metadata": {"m": 1}}) == OWN
    assert await decide(store, ctx(role, "threads", "update"),
                        {"thread_id": "th", "action": "interrupt"}) == OWN


# --- what a run or cron names must be the tenant's --------------------------------------------


async def test_runs_and_crons_name_only_the_tenants_or_the_systems_assistants(
        store: Store) -> None:
    store.put_assistant(Assistant("mine", "g", metadata=OWN))
    store.put_assistant(Assistant("theirs", "g", metadata={"tenant_id": "t2"}))
    store.put_assistant(Assistant("system", "g", metadata={"created_by": "system"}))
    for resource, action in (("threads", "create_run"), ("crons", "create")):
        for assistant, allowed in (("mine", True), ("system", True), ("theirs", False),
                                   ("unknown-or-a-graph-name", True)):
            result = await decide(store, ctx("runner", resource, action),
                                  {"assistant_id": assistant})
            assert (result is not False) == allowed, (resource, assistant)


async def test_a_cron_names_only_the_tenants_threads(store: Store) -> None:
    store.put_thread(Thread("mine", metadata=OWN))
    store.put_thread(Thread("theirs", metadata={"tenant_id": "t2"}))
    assert await decide(store, ctx("runner", "crons", "create"), {"thread_id": "mine"}) == OWN
    assert await decide(store, ctx("runner", "crons", "create"), {"thread_id": "theirs"}) \
        is False
    # A run's thread is scoped by the filter (another tenant's thread: not found, 404).
    assert await decide(store, ctx("runner", "threads", "create_run"),
                        {"thread_id": "theirs"}) == OWN
