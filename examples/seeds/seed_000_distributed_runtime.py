# Seed 000 -- Distributed Runtime (the "Demonstration" cell of seed document 000_3da77339b73f6fe6,
# not part of this repository).
#
# The seed's demo code, unchanged except for two lines: `import treadle` is added and
# `graph = builder.compile()` became `graph = treadle.compile(builder)`.
# Run: python examples/seeds/seed_000_distributed_runtime.py
# The store is ./.treadle/treadle.db under the current directory (or $TREADLE_STORE).

# ===== One-Cell Demo: Distributed LangGraph Runtime =====

from langgraph.graph import StateGraph, END
from typing import TypedDict
import time
import random

import treadle

# ----------------------------
# 1. Define Distributed State
# ----------------------------

class State(TypedDict):
    input: str
    step: int
    result: str
    done: bool

# ----------------------------
# 2. Worker Nodes (simulate distributed workers)
# ----------------------------

def planner(state: State):
    print(f"[Planner] running on worker-A | step={state['step']}")
    time.sleep(0.5)
    return {"step": state["step"] + 1}

def executor(state: State):
    print(f"[Executor] running on worker-B | step={state['step']}")
    time.sleep(0.5)
    return {"result": state["input"].upper()}

def verifier(state: State):
    print(f"[Verifier] running on worker-C | step={state['step']}")
    time.sleep(0.5)
    return {"done": state["step"] >= 2}

# ----------------------------
# 3. Router (loop controller)
# ----------------------------

def should_continue(state: State):
    return END if state["done"] else "planner"

# ----------------------------
# 4. Build Cyclic Graph
# ----------------------------

builder = StateGraph(State)

builder.add_node("planner", planner)
builder.add_node("executor", executor)
builder.add_node("verifier", verifier)

builder.set_entry_point("planner")

builder.add_edge("planner", "executor")
builder.add_edge("executor", "verifier")

builder.add_conditional_edges(
    "verifier",
    should_continue,
    {"planner": "planner", END: END}
)

graph = treadle.compile(builder)

# ----------------------------
# 5. "Distributed" Invocation
# ----------------------------

# treadle accepts thread_id at the top level of the config (plain LangGraph wants it in
# config["configurable"]); every step of this thread is checkpointed in the store.
result = graph.invoke(
    {"input": "distributed systems", "step": 0, "done": False, "result": ""},
    config={
        "recursion_limit": 10,
        "thread_id": "enterprise-session-42"
    }
)

print("\nFinal State:", result)
