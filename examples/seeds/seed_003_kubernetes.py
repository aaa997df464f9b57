# Seed 003 -- Orchestration with Kubernetes (the "Demonstration" cell of seed document
# 003_1a866e8ef7d3feaa, not part of this repository).
#
# The seed's demo code, unchanged except for `import treadle` added,
# `graph = builder.compile()` -> `graph = treadle.compile(builder)`, and the
# recursion_limit raised from 10 to 25 (see the comment at the invoke).
# Run: python examples/seeds/seed_003_kubernetes.py
# The store is ./.treadle/treadle.db under the current directory (or $TREADLE_STORE).

# ==============================================
# LangGraph + Kubernetes Production Demonstration
# ==============================================

"""
This single cell demonstrates:

1. A LangGraph workflow
2. How it runs inside a container
3. How Kubernetes orchestrates it
4. How state persists across failures
"""

# ---------- LangGraph Workflow ----------

from langgraph.graph import StateGraph, END
from typing import TypedDict

import treadle

class State(TypedDict):
    step: int
    done: bool

def work(state):
    print(f"Processing step {state['step']}")
    return {"step": state["step"] + 1}

def decide(state):
    if state["step"] >= 5:
        return {"done": True}
    return {"done": False}

builder = StateGraph(State)

builder.add_node("work", work)
builder.add_node("decide", decide)

builder.set_entry_point("work")
builder.add_edge("work", "decide")

builder.add_conditional_edges(
    "decide",
    lambda s: END if s["done"] else "work",
    {"work": "work", END: END}
)

graph = treadle.compile(builder)

# ---------- Simulated Kubernetes Execution ----------

print("\n--- Kubernetes Pod Execution Start ---")

# Imagine this code running inside a Kubernetes pod.
# If the pod crashes, state is reloaded from Redis/Postgres.

state = {"step": 0, "done": False}
# The seed passes recursion_limit 10, which is too low: work -> decide runs five times,
# i.e. 10 supersteps, and LangGraph (plain or under treadle) raises GraphRecursionError
# when the 10th superstep would still continue, so the cell never reaches "Execution
# Complete". 25 (LangGraph's default) leaves room for the loop the seed means to run.
final_state = graph.invoke(state, config={"recursion_limit": 25})

print("\n--- Kubernetes Pod Execution Complete ---")
print("Final State:", final_state)


# ---------- Kubernetes Deployment (Embedded Spec) ----------

kubernetes_deployment = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: langgraph-runtime
spec:
  replicas: 3
  selector:
    matchLabels:
      app: langgraph
  template:
    metadata:
      labels:
        app: langgraph
    spec:
      containers:
      - name: runtime
        image: langgraph-app:latest
        env:
        - name: STATE_DB_URL
          value: postgres://state-db
"""

print("\n--- Kubernetes Deployment Spec ---")
print(kubernetes_deployment)
