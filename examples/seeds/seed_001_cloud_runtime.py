# Seed 001 -- Cloud Runtime (the "Demonstration" cell of seed document 001_27230fb7fcbb37f0,
# not part of this repository).
#
# The seed's demo code, unchanged except for two lines: `import treadle` is added and
# `graph = builder.compile()` became `graph = treadle.compile(builder)`.
# Run: python examples/seeds/seed_001_cloud_runtime.py
# The store is ./.treadle/treadle.db under the current directory (or $TREADLE_STORE).
#
# The seed's text says "On failure -> resume from checkpoint", but its code restarts the
# whole graph from step 0 on every failure. With treadle the text holds: see the comments
# at the `while True` loop below.

from langgraph.graph import StateGraph, END
from typing import TypedDict
import time, random

import treadle

# 1️⃣ State definition (cloud-persistent)
class State(TypedDict):
    step: int
    result: str

# 2️⃣ Nodes (always return dict)
def planner(state):
    print("Planner running...")
    return {"step": state["step"] + 1}

def worker(state):
    print("Worker running...")
    time.sleep(0.5)
    if random.random() < 0.3:
        raise RuntimeError("Transient failure")   # simulate cloud failure
    return {"result": f"Processed step {state['step']}"}

# 3️⃣ Router (returns next node name)
def controller(state):
    print("Controller checking...")
    if state["step"] >= 3:
        return END
    return "planner"

# 4️⃣ Build graph
builder = StateGraph(State)
builder.add_node("planner", planner)
builder.add_node("worker", worker)
builder.add_node("controller", lambda s: {})  # controller node only updates state (none here)

builder.set_entry_point("planner")
builder.add_edge("planner", "worker")
builder.add_edge("worker", "controller")

builder.add_conditional_edges("controller", controller, {
    "planner": "planner",
    END: END
})

graph = treadle.compile(builder)

# 5️⃣ Simulated Cloud Execution with Recovery
thread_id = "user-session-001"
state = {"step": 0, "result": ""}

print("\n--- Cloud Runtime Execution ---\n")

# Where the seed's code and text disagree: with plain LangGraph, the RuntimeError raised
# by `worker` escapes graph.invoke() and this loop starts the graph over (the planner
# steps already done run again). With treadle, the error never gets here in the usual
# case: RuntimeError is transient, so the runtime retries `worker` alone from the last
# checkpoint (up to 5 attempts, exponential backoff from 0.5 s with jitter). The planner
# step that already finished is not rerun: you see "Worker running..." again without a
# "Planner running..." before it, and treadle logs on stderr, e.g.
#   node 'worker' attempt 1/5 failed (RuntimeError: Transient failure); retrying it from the last checkpoint
# That retry is the "resume from checkpoint" the text describes.
#
# The loop is kept as the seed wrote it, as a last resort; it is reached only when all
# 5 attempts of one task fail (0.3**5, about 0.2% per worker step). In that case
# `graph.invoke(state, ...)` passes the original input, which on an existing thread starts a
# new run of it: the input overwrites step/result and the graph runs again from the
# planner, as in the seed. The final state is the same ({'step': 3, 'result':
# 'Processed step 3'}), only that rare path repeats earlier steps. (treadle's circuit
# breaker opens only after 10 consecutive failed attempts, TREADLE_BREAKER_THRESHOLD, so
# one task using up its 5 attempts does not trip it.) To resume the
# failed run itself instead, one would call
# `graph.invoke(None, config={"thread_id": thread_id})` (None input = continue from the
# thread's last checkpoint, rerunning only the failed task). We keep the seed's line:
# treadle's retry already resumes from the checkpoint, so the line is not needed for
# what the text promises, and it stays correct even when the store has nothing for this
# thread yet.
while True:
    try:
        state = graph.invoke(state, config={"thread_id": thread_id, "recursion_limit": 10})
        break
    except Exception as e:
        print("⚠️ Failure detected, resuming from checkpoint...\n")
        time.sleep(1)

print("\n--- Final State ---")
print(state)
