"""Fixture: a node that fails with every secret of its process in its exception message
and its log line (the database URL with its password, an API key, a JWT, the webhook
secret and the AES key), as a careless tool would."""

import logging
import os
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str


def call_tool(state: State) -> State:
    env = os.environ
    message = (f"tool failed: cannot reach {env['SPILL_DB_URL']} "
               f"(headers {{'x-api-key': '{env['SPILL_A']}', "
               f"'Authorization': 'Bearer {env['SPILL_T']}'}}) "
               f"signing with {env['TREADLE_WEBHOOK_SECRET']} and key {env['LANGGRAPH_AES_KEY']}")
    logging.getLogger("spill").error("%s", message)
    raise RuntimeError(message)


builder = StateGraph(State)
builder.add_node("call_tool", call_tool)
builder.add_edge(START, "call_tool")
builder.add_edge("call_tool", END)
graph = builder.compile()
