"""Graphs the server tests serve (see langgraph.json beside this file)."""

from __future__ import annotations

import operator
import os
import time
from typing import Annotated, Any

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.store.base import BaseStore
from langgraph.types import Command, Send, interrupt
from typing_extensions import TypedDict


# --- chain: ten nodes, each adds one ----------------------------------------------------
class Count(TypedDict):
    n: int


def _step(state: Count) -> dict[str, int]:
    return {"n": state["n"] + 1}


def _chain(length: int = 10) -> Any:
    b = StateGraph(Count)
    names = [f"s{i}" for i in range(length)]
    for name in names:
        b.add_node(name, _step)
    b.add_edge(START, names[0])
    for a, c in zip(names, names[1:], strict=False):
        b.add_edge(a, c)
    b.add_edge(names[-1], END)
    return b


chain = _chain().compile()


# --- slow: sleeps (seconds from input) in each of three steps, for cancel/join tests ----
class Slow(TypedDict):
    n: int
    delay: float


def _slow_step(state: Slow) -> dict[str, int]:
    time.sleep(state.get("delay", 0.5))
    return {"n": state["n"] + 1}


def _slow() -> Any:
    b = StateGraph(Slow)
    b.add_node("a", _slow_step)
    b.add_node("b", _slow_step)
    b.add_node("c", _slow_step)
    b.add_edge(START, "a")
    b.add_edge("a", "b")
    b.add_edge("b", "c")
    b.add_edge("c", END)
    return b


slow = _slow().compile()


# --- approval: human in the loop with interrupt() ---------------------------------------
class Approval(TypedDict, total=False):
    request: str
    decision: str
    log: Annotated[list[str], operator.add]


def draft(state: Approval) -> dict[str, Any]:
    return {"log": [f"drafted {state.get('request', '')}"]}


def review(state: Approval) -> dict[str, Any]:
    decision = interrupt({"question": f"approve {state.get('request', '')}?"})
    return {"decision": str(decision), "log": ["reviewed"]}


def publish(state: Approval) -> dict[str, Any]:
    return {"log": [f"published ({state.get('decision')})"]}


def _approval() -> Any:
    b = StateGraph(Approval)
    b.add_node("draft", draft)
    b.add_node("review", review)
    b.add_node("publish", publish)
    b.add_edge(START, "draft")
    b.add_edge("draft", "review")
    b.add_edge("review", "publish")
    b.add_edge("publish", END)
    return b


approval = _approval().compile()


# --- chat: streams message chunks, custom events, uses the store, calls a subgraph ------
class Inner(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    hops: int


def inner_step(state: Inner) -> dict[str, Any]:
    get_stream_writer()({"inner": "hop"})
    return {"hops": state.get("hops", 0) + 1}


_inner_builder = StateGraph(Inner)
_inner_builder.add_node("inner_step", inner_step)
_inner_builder.add_edge(START, "inner_step")
_inner_builder.add_edge("inner_step", END)
inner = _inner_builder.compile()


class Chat(MessagesState):
    hops: int


async def talk(state: Chat, config: RunnableConfig, *, store: BaseStore) -> dict[str, Any]:
    writer = get_stream_writer()
    writer({"progress": "thinking"})
    last = state["messages"][-1].content if state["messages"] else ""
    user = config["configurable"].get("user", "anon")
    await store.aput(("memories", user), "last", {"text": last})
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel

    model = GenericFakeChatModel(messages=iter([AIMessage(content=f"echo: {last}")]))
    reply = await model.ainvoke(state["messages"], config)
    return {"messages": [reply]}


def _chat() -> Any:
    b = StateGraph(Chat)
    b.add_node("talk", talk)
    b.add_node("inner", inner)
    b.add_edge(START, "talk")
    b.add_edge("talk", "inner")
    b.add_edge("inner", END)
    return b


chat = _chat().compile()


# --- fanout: Send + Command ----------------------------------------------------------------
class Fan(TypedDict, total=False):
    items: list[int]
    results: Annotated[list[int], operator.add]
    route: str


def plan(state: Fan) -> Command[Any]:
    return Command(goto=[Send("work", {"items": [i]}) for i in state.get("items", [])],
                   update={"route": "fanned"})


def work(state: Fan) -> dict[str, Any]:
    return {"results": [state["items"][0] * 2]}


def _fanout() -> Any:
    b = StateGraph(Fan)
    b.add_node("plan", plan)
    b.add_node("work", work)
    b.add_edge(START, "plan")
    b.add_edge("work", END)
    return b


fanout = _fanout().compile()


# --- factory: a graph made per config (langgraph.json may name a function) ----------------
def make_graph(config: dict[str, Any]) -> Any:
    """Called per run with the run's config: ``configurable.length`` nodes (default 10)."""
    return _chain(int((config.get("configurable") or {}).get("length", 10))).compile()


# --- env: reads a variable langgraph.json's "env" sets ------------------------------------
class Env(TypedDict, total=False):
    value: str


def read_env(state: Env) -> dict[str, str]:
    return {"value": os.environ.get("TREADLE_TEST_ENV", "unset")}


_env_builder = StateGraph(Env)
_env_builder.add_node("read_env", read_env)
_env_builder.add_edge(START, "read_env")
_env_builder.add_edge("read_env", END)
env = _env_builder.compile()


# --- flaky: a node that fails once per thread (transient), then a node run remotely -------
class Flaky(TypedDict, total=False):
    fail: bool  # fail for good (a permanent error): the run ends in error
    done: Annotated[list[str], operator.add]


_FAILED_ONCE: set[str] = set()  # threads whose first attempt of "shaky" failed (this process)


def shaky(state: Flaky, config: RunnableConfig) -> dict[str, Any]:
    if state.get("fail"):
        raise ValueError("asked to fail")
    thread_id = config["configurable"]["thread_id"]
    if thread_id not in _FAILED_ONCE:
        _FAILED_ONCE.add(thread_id)
        raise ConnectionError("fails once per thread (transient: retried)")
    return {"done": ["shaky"]}


def far(state: Flaky) -> dict[str, Any]:
    return {"done": ["far"]}


_flaky_builder = StateGraph(Flaky)
_flaky_builder.add_node("shaky", shaky)
_flaky_builder.add_node("far", far, metadata={"treadle": {"placement": "remote"}})
_flaky_builder.add_edge(START, "shaky")
_flaky_builder.add_edge("shaky", "far")
_flaky_builder.add_edge("far", END)
flaky = _flaky_builder.compile()
