"""A graph whose node returns what its run's ``configurable`` holds (the request headers
langgraph.json's http.configurable_headers copies), for tests/e2e/test_http_app.py."""

from __future__ import annotations

from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    seen: dict[str, Any]


def read(state: State, config: RunnableConfig) -> dict[str, Any]:
    conf = config.get("configurable") or {}
    return {"seen": {k: v for k, v in conf.items() if isinstance(v, str)
                     and (not k.startswith("__") or k == "__treadle_steer")}}


_builder = StateGraph(State)
_builder.add_node("read", read)
_builder.add_edge(START, "read")
_builder.add_edge("read", END)
headers = _builder.compile()
