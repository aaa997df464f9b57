# Seed 002 -- Horizontal Scaling (the "Demonstration" cell of seed document 002_526691afb0d39ead,
# not part of this repository).
#
# The seed's demo code, unchanged except for two lines: `import treadle` is added and
# `graph = builder.compile()` became `graph = treadle.compile(builder)`.
# Run: python examples/seeds/seed_002_horizontal_scaling.py
# The store is ./.treadle/treadle.db under the current directory (or $TREADLE_STORE).

# One-cell demonstration: Horizontally-scaled LangGraph execution

from langgraph.graph import StateGraph, END
from typing import TypedDict
import random

import treadle

# ----------------------------
# 1. Shared Persistent State (simulated DB)
# ----------------------------
GLOBAL_STATE_STORE = {}

# ----------------------------
# 2. Graph State Definition
# ----------------------------
class State(TypedDict):
    thread_id: str
    step: int
    done: bool

# ----------------------------
# 3. Nodes
# ----------------------------
def work(state: State) -> State:
    state["step"] += 1
    if state["step"] >= 5:
        state["done"] = True
    print(f"Worker {random.randint(1,3)} executed step {state['step']}")
    return state

# ----------------------------
# 4. Routing Logic
# ----------------------------
def router(state: State):
    return END if state["done"] else "work"

# ----------------------------
# 5. Graph Construction
# ----------------------------
builder = StateGraph(State)
builder.add_node("work", work)
builder.set_entry_point("work")
builder.add_conditional_edges("work", router, {"work": "work", END: END})

graph = treadle.compile(builder)

# ----------------------------
# 6. Simulated Distributed Execution
# ----------------------------
thread_id = "job-123"

# Load from shared store (like Redis/Postgres)
state = GLOBAL_STATE_STORE.get(thread_id, {"thread_id": thread_id, "step": 0, "done": False})

# Kept as the seed wrote it: a stateless call, graph.invoke(state) with no thread_id in
# the config, and the dict above standing in for the shared store. With treadle that
# still works, and more: each invoke gets a fresh thread whose every step is checkpointed
# in treadle's store (./.treadle/treadle.db here; a shared Postgres via TREADLE_STORE or
# store="postgresql://..." in a real deployment). The dict is then unnecessary: a
# replica would pass config={"thread_id": thread_id} so any replica can pick the job up
# (graph.get_state(...) to load it, graph.invoke(None, config=...) to resume it after a
# crash), and treadle's per-thread fencing keeps two replicas from interleaving writes.
while not state["done"]:
    state = graph.invoke(state)
    # Save back to shared store (like DB)
    GLOBAL_STATE_STORE[thread_id] = state

print("\nFinal State:", GLOBAL_STATE_STORE[thread_id])
