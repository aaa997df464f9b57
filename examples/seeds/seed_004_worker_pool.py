# Seed 004 -- Worker Pool (the "Demonstration" cell of seed document 004_60ac7d64f9f316de,
# not part of this repository).
#
# The seed's demo code, unchanged except for two lines: `import treadle` is added and
# `graph = builder.compile()` became `graph = treadle.compile(builder)`.
# Run: python examples/seeds/seed_004_worker_pool.py
# The store is ./.treadle/treadle.db under the current directory (or $TREADLE_STORE).

from langgraph.graph import StateGraph, END
from typing import TypedDict, Annotated
import time
import random
import operator

import treadle

# ---------- 1. Define Shared State with Reducer ----------
class State(TypedDict):
    results: Annotated[list, operator.add]

# ---------- 2. Define Start and Parallel Tasks ----------
def start(state: State):
    return state

def worker_a(state: State):
    time.sleep(random.uniform(0.5, 1.5))
    return {"results": ["A"]}

def worker_b(state: State):
    time.sleep(random.uniform(0.5, 1.5))
    return {"results": ["B"]}

def worker_c(state: State):
    time.sleep(random.uniform(0.5, 1.5))
    return {"results": ["C"]}

def collect(state: State):
    return {"results": [f"Collected: {', '.join(sorted(state['results']))}"]}

# ---------- 3. Build Graph ----------
builder = StateGraph(State)

builder.add_node("start", start)
builder.add_node("A", worker_a)
builder.add_node("B", worker_b)
builder.add_node("C", worker_c)
builder.add_node("collect", collect)

builder.set_entry_point("start")

# Fan-out: start branches to all workers
builder.add_edge("start", "A")
builder.add_edge("start", "B")
builder.add_edge("start", "C")

# Fan-in: all workers converge to collect
builder.add_edge("A", "collect")
builder.add_edge("B", "collect")
builder.add_edge("C", "collect")

builder.add_edge("collect", END)

graph = treadle.compile(builder)

# ---------- 4. Execute with Worker Pool ----------
start = time.time()

# The seed's text says max_workers sizes the worker pool, but plain LangGraph ignores
# that config key. treadle honours it: at most 3 node tasks of this run execute at once,
# and the three branches A, B and C (one superstep) all run in parallel, so the
# Execution Time below is about the slowest branch (at most ~1.5 s plus overhead), not
# the sum of the three sleeps.
result = graph.invoke({"results": []}, config={"max_workers": 3})

end = time.time()

print("Final State:", result)
print("Execution Time:", round(end - start, 2), "seconds")
