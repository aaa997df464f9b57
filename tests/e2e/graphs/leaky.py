"""Fixture: a node that fails with secrets in its local variables, its message and its log
line (an API key from the environment, the run's config, a bearer token, a URL password)."""

import logging
import os
from typing import TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str


def call_model(state: State, config: RunnableConfig) -> State:
    api_key = os.environ["OPENAI_API_KEY"]
    settings = {k: v for k, v in config.get("configurable", {}).items() if k == "api_key"}
    headers = {"Authorization": f"Bearer {os.environ['LEAKY_BEARER']}"}
    database = f"postgresql://app:{os.environ['LEAKY_DB_PW']}@db.internal/app"
    try:
        raise ConnectionError(
            f"model refused key {api_key} with {settings} {headers} (cache {database})"
        )
    except ConnectionError:
        logging.getLogger("leaky").exception("model call failed for key %s", api_key)
        raise


builder = StateGraph(State)
builder.add_node("call_model", call_model)
builder.add_edge(START, "call_model")
builder.add_edge("call_model", END)
graph = builder.compile()
