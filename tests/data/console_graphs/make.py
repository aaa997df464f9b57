"""Write the graph JSONs the console's graph drawing is tested on (tests/e2e/console).

Each file is what ``GET /assistants/{id}/graph?xray=...`` returns for a small LangGraph
graph: ``compiled.get_graph(xray=...).to_json()``. Run it again after a LangGraph upgrade
(``python tests/data/console_graphs/make.py``) and commit the diff; test_graph_drawing.py
fails while the committed nodes and edges differ from what the installed LangGraph draws.
"""

from __future__ import annotations

import json
import operator
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

HERE = Path(__file__).parent


class State(TypedDict, total=False):
    log: Annotated[list[str], operator.add]
    route: str


def new() -> StateGraph[Any, Any, Any, Any]:
    return StateGraph(State)


def step(name: str) -> Any:  # a node (typed Any: LangGraph matches nodes by parameter name)
    def run(state: State) -> State:
        return {"log": [name]}

    return run


def chain(*names: str) -> Any:
    """A compiled linear graph START -> names... -> END."""
    g = new()
    for name in names:
        g.add_node(name, step(name))
    for a, b in zip((START, *names), (*names, END), strict=True):
        g.add_edge(a, b)
    return g.compile()


def linear() -> Any:
    return chain("fetch", "parse", "summarise")


def router_path_map() -> Any:
    """A conditional edge with a path_map whose keys differ from the targets (edge labels)."""
    g = new()
    for name in ("classify", "billing", "support"):
        g.add_node(name, step(name))
    g.add_edge(START, "classify")
    g.add_conditional_edges("classify", lambda s: s.get("route", "done"),
                            {"money": "billing", "help": "support", "done": END})
    g.add_edge("billing", END)
    g.add_edge("support", END)
    return g.compile()


def router_no_path_map() -> Any:
    """A conditional edge with no path_map and no annotation: drawn to every node and END."""
    g = new()
    for name in ("classify", "billing", "support"):
        g.add_node(name, step(name))
    g.add_edge(START, "classify")
    g.add_conditional_edges("classify", lambda s: s.get("route", END))
    g.add_edge("billing", END)
    g.add_edge("support", END)
    return g.compile()


def router_literal() -> Any:
    """A conditional edge whose targets come from the router's Literal return annotation."""

    def route(state: State) -> Literal["billing", "support", "__end__"]:
        return "billing"

    g = new()
    for name in ("classify", "billing", "support"):
        g.add_node(name, step(name))
    g.add_edge(START, "classify")
    g.add_conditional_edges("classify", route)
    g.add_edge("billing", END)
    g.add_edge("support", END)
    return g.compile()


def fanout_send() -> Any:
    """Map-reduce with Send: plan -> worker (one per item) -> reduce."""

    def spread(state: State) -> list[Send]:
        return [Send("worker", {"route": str(i)}) for i in range(3)]

    g = new()
    for name in ("plan", "worker", "reduce"):
        g.add_node(name, step(name))
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", spread, ["worker"])
    g.add_edge("worker", "reduce")
    g.add_edge("reduce", END)
    return g.compile()


def fanout_static() -> Any:
    """Static fan-out and a join that waits for every branch."""
    g = new()
    branches = ("search_web", "search_docs", "search_code")
    for name in ("plan", *branches, "merge"):
        g.add_node(name, step(name))
    g.add_edge(START, "plan")
    for name in branches:
        g.add_edge("plan", name)
    g.add_edge(list(branches), "merge")
    g.add_edge("merge", END)
    return g.compile()


def cycle() -> Any:
    """The agent/tool loop."""

    def should_continue(state: State) -> Literal["tools", "__end__"]:
        return "__end__"

    g = new()
    g.add_node("agent", step("agent"))
    g.add_node("tools", step("tools"))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", should_continue)
    g.add_edge("tools", "agent")
    return g.compile()


def self_loop() -> Any:
    """A node that routes back to itself until done (a counter, a retry loop)."""

    def again(state: State) -> Literal["count", "__end__"]:
        return "__end__"

    g = new()
    g.add_node("count", step("count"))
    g.add_edge(START, "count")
    g.add_conditional_edges("count", again)
    return g.compile()


def subgraph() -> Any:
    """A compiled graph as a node, between two plain nodes, left by a conditional edge."""
    g = new()
    g.add_node("prepare", step("prepare"))
    g.add_node("research", chain("search", "read", "note"))
    g.add_node("write", step("write"))
    g.add_edge(START, "prepare")
    g.add_edge("prepare", "research")
    g.add_conditional_edges("research", lambda s: "write" if s else "again",
                            {"write": "write", "again": "prepare"})
    g.add_edge("write", END)
    return g.compile()


def subgraph_router() -> Any:
    """A subgraph that starts with a conditional edge and loops (its START stays drawn)."""

    def pick(state: State) -> Literal["lookup", "answer"]:
        return "answer"

    inner = new()
    inner.add_node("lookup", step("lookup"))
    inner.add_node("answer", step("answer"))
    inner.add_conditional_edges(START, pick)
    inner.add_edge("lookup", "answer")
    inner.add_edge("answer", END)
    g = new()
    g.add_node("triage", step("triage"))
    g.add_node("helper", inner.compile())
    g.add_edge(START, "triage")
    g.add_edge("triage", "helper")
    g.add_edge("helper", END)
    return g.compile()


def nested() -> Any:
    """Subgraphs two levels deep: outer -> team (lead -> crew (dig -> check)) -> report."""
    team = new()
    team.add_node("lead", step("lead"))
    team.add_node("crew", chain("dig", "check"))
    team.add_edge(START, "lead")
    team.add_edge("lead", "crew")
    team.add_edge("crew", END)
    g = new()
    g.add_node("intake", step("intake"))
    g.add_node("team", team.compile())
    g.add_node("report", step("report"))
    g.add_edge(START, "intake")
    g.add_edge("intake", "team")
    g.add_edge("team", "report")
    g.add_edge("report", END)
    return g.compile()


def wide() -> Any:
    """30 parallel nodes between a split and a join."""
    g = new()
    names = [f"worker_{i:02d}" for i in range(30)]
    for name in ("split", *names, "join"):
        g.add_node(name, step(name))
    g.add_edge(START, "split")
    for name in names:
        g.add_edge("split", name)
        g.add_edge(name, "join")
    g.add_edge("join", END)
    return g.compile()


# file name -> (graph, xray)
GRAPHS: dict[str, tuple[Callable[[], Any], bool | int]] = {
    "linear": (linear, True),
    "router_path_map": (router_path_map, True),
    "router_no_path_map": (router_no_path_map, True),
    "router_literal": (router_literal, True),
    "fanout_send": (fanout_send, True),
    "fanout_static": (fanout_static, True),
    "cycle": (cycle, True),
    "self_loop": (self_loop, True),
    "subgraph_xray": (subgraph, True),
    "subgraph_no_xray": (subgraph, False),
    "subgraph_router": (subgraph_router, True),
    "nested_xray": (nested, True),
    "nested_xray_1": (nested, 1),
    "wide": (wide, True),
}


def drawn(name: str) -> dict[str, Any]:
    """The JSON of graph ``name`` as the server returns it (json round trip: no tuples)."""
    build, xray = GRAPHS[name]
    doc: dict[str, Any] = json.loads(json.dumps(build().get_graph(xray=xray).to_json(), default=str))
    return doc


def main(out: Path = HERE) -> None:
    for name in GRAPHS:
        path = out / f"{name}.json"
        path.write_text(json.dumps(drawn(name), indent=1) + "\n")
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
