"""langgraph.json's ``priority`` (treadle.server.priority): loading the handler, the context it
gets, what it may return; the settings checks of treadle.store.queue."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from treadle.auth.user import AuthUser
from treadle.errors import ConfigError, PriorityError
from treadle.server.priority import ThreadPriorities, load_priority
from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.queue import ThreadPriority, check_priority

ASSISTANT = SimpleNamespace(assistant_id="a-1", graph_id="g", metadata={"team": "x"})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/p.db")
    try:
        yield s
    finally:
        s.close()


def _settle(priorities: ThreadPriorities, store: Store, thread_id: str = "t", **kw: Any
            ) -> ThreadPriority:
    args: dict[str, Any] = {"user": None, "given_thread": True, "thread_metadata": {},
                            "assistant": ASSISTANT, "run_metadata": {}, "cron_id": None, **kw}
    return asyncio.run(priorities.settle(store, thread_id, **args))


@pytest.mark.parametrize(("priority", "group", "expected"), [
    (None, None, ThreadPriority(0, "default")),
    (-5, "", ThreadPriority(-5, "default")),
    (5, "tenant-1", ThreadPriority(5, "tenant-1")),
    (0, "g" * 256, ThreadPriority(0, "g" * 256)),
])
def test_settings_the_sdk_allows(priority: object, group: object, expected: ThreadPriority) -> None:
    assert check_priority(priority, group) == expected


@pytest.mark.parametrize(("priority", "group", "message"), [
    (6, None, "priority 6 is not an integer from -5 to 5"),
    (-6, None, "priority -6"),
    (1.5, None, "priority 1.5"),
    (True, None, "priority True"),
    ("1", None, "priority '1'"),
    (0, "g" * 257, "at most 256 characters"),
    (0, 7, "fairness_group 7"),
])
def test_settings_the_sdk_refuses(priority: object, group: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_priority(priority, group)


def _write(tmp_path: Path, body: str, name: str = "prio") -> str:
    (tmp_path / f"{name}.py").write_text(body)  # one name per body: modules are cached
    return f"{tmp_path / name}.py:priority"


def test_a_reference_to_something_else_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a int, not a langgraph_sdk.Priority"):
        load_priority(_write(tmp_path, "priority = 3\n"))
    with pytest.raises(ConfigError, match="has no attribute 'priority'"):
        load_priority(_write(tmp_path, "other = 3\n", "other"))
    with pytest.raises(ConfigError, match="no such file"):
        load_priority(f"{tmp_path / 'missing.py'}:priority")


def test_a_priority_without_handler_is_refused(tmp_path: Path) -> None:
    ref = _write(tmp_path, "from langgraph_sdk import Priority\npriority = Priority()\n")
    with pytest.raises(ConfigError, match=r"no handler: decorate .* @priority.assign"):
        load_priority(ref)


def test_the_handler_sees_the_context_once_per_thread(store: Store) -> None:
    seen: list[Any] = []

    async def handler(ctx: Any) -> dict[str, Any]:
        seen.append(ctx)
        return {"priority": -2, "fairness_group": ctx.user.identity}

    user = AuthUser(identity="alice", permissions=("premium",))
    prio = ThreadPriorities(handler)
    got = _settle(prio, store, user=user, thread_metadata={"k": 1},
                  run_metadata={"r": 2}, cron_id="cron-9")
    assert got == ThreadPriority(-2, "alice")
    assert _settle(prio, store, user=AuthUser(identity="bob")) == got  # stored: not asked
    [ctx] = seen
    assert (ctx.thread_id, ctx.thread_metadata, ctx.run_metadata, ctx.cron_id) == \
        ("t", {"k": 1}, {"r": 2}, "cron-9")
    assert (ctx.assistant_id, ctx.graph_id, ctx.assistant_metadata) == ("a-1", "g", {"team": "x"})
    assert list(ctx.permissions) == ["premium"] and ctx.user.identity == "alice"


def test_without_auth_or_a_given_thread(store: Store) -> None:
    seen: list[Any] = []

    async def handler(ctx: Any) -> None:
        seen.append(ctx)

    assert _settle(ThreadPriorities(handler), store, given_thread=False) == ThreadPriority()
    assert seen[0].thread_id is None and seen[0].user.identity == ""
    assert list(seen[0].permissions) == []
    assert store.thread_priority("t") == ThreadPriority()  # the defaults are stored too


@pytest.mark.parametrize(("returned", "message"), [
    ({"priority": 9}, "returned priority 9 is not an integer"),
    (3, "returned a int; return a dict"),
    ({"fairness_group": "x" * 300}, "at most 256 characters"),
])
def test_bad_settings_store_nothing(store: Store, returned: object, message: str) -> None:
    async def handler(_ctx: Any) -> object:
        return returned

    with pytest.raises(PriorityError, match=message):
        _settle(ThreadPriorities(handler), store)
    assert store.thread_priority("t") is None


def test_a_failing_handler_is_a_priority_error(store: Store) -> None:
    async def handler(_ctx: Any) -> object:
        raise RuntimeError("quota service down")

    with pytest.raises(PriorityError, match="handler failed for thread t: RuntimeError: quota"):
        _settle(ThreadPriorities(handler), store)
    assert store.thread_priority("t") is None
