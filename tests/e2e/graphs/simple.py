"""Fixture: three nodes in a row; ``graph`` is the builder, ``compiled`` the compiled graph."""

import operator
from typing import Annotated, Any, TypedDict

from helpers import shout  # a sibling import: the file's directory is on sys.path
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    name: str
    greeting: str
    steps: Annotated[list[str], operator.add]


def hello(state: State) -> dict[str, Any]:
    return {"greeting": f"hello {state.get('name', 'world')}", "steps": ["hello"]}


def louder(state: State) -> dict[str, Any]:
    return {"greeting": shout(state["greeting"]), "steps": ["louder"]}


def done(state: State) -> dict[str, Any]:
    print("done node prints to stdout")  # the user's own output: allowed on stdout
    return {"steps": ["done"]}


graph = StateGraph(State)
graph.add_node("hello", hello)
graph.add_node("louder", louder)
graph.add_node("done", done)
graph.add_edge(START, "hello")
graph.add_edge("hello", "louder")
graph.add_edge("louder", "done")
graph.add_edge("done", END)

compiled = graph.compile()


def make_graph() -> StateGraph[State, None, State, State]:
    return graph


if __name__ == "__main__":
    raise SystemExit("the __main__ block of a graph file must not run under treadle")
