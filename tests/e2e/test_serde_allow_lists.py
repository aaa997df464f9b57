"""langgraph.json's ``checkpointer.serde`` through `treadle serve` and its worker process: a
value of a class the graph's schema does not name, read back from the checkpoint when
an interrupted run resumes (on the worker) and from run results (on the API), is left
as its data by default (the class is never called), and rebuilt once allow-listed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from processes import StartServer

TYPES = '''
import os
from dataclasses import dataclass


@dataclass
class Parcel:
    label: str

    def __post_init__(self) -> None:  # every construction leaves a line
        with open(os.environ["PARCEL_LOG"], "a") as log:
            log.write(f"{os.getpid()} {self.label}\\n")
'''

GRAPH = '''
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from parcel_types import Parcel


class State(TypedDict, total=False):
    blob: Any  # the schema names no class: Parcel is not allowed by it
    seen: str


def make(state: State) -> State:
    return {"blob": Parcel("made")}


def inspect(state: State) -> State:
    return {"seen": type(state["blob"]).__name__}


builder = StateGraph(State)
builder.add_node("make", make)
builder.add_node("inspect", inspect)
builder.add_edge(START, "make")
builder.add_edge("make", "inspect")
builder.add_edge("inspect", END)
graph = builder.compile()
'''


def _project(tmp_path: Path, serde: dict[str, Any] | None) -> Path:
    (tmp_path / "parcel_types.py").write_text(TYPES)
    (tmp_path / "parcel_graph.py").write_text(GRAPH)
    doc: dict[str, Any] = {"dependencies": ["."], "graphs": {"parcel": "./parcel_graph.py:graph"}}
    if serde is not None:
        doc["checkpointer"] = {"serde": serde}
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps(doc))
    return config


def _resume_sees(base: str) -> tuple[Any, str]:
    """(the interrupted run's values, the class the resumed node read from the checkpoint)."""
    with httpx.Client(base_url=base, timeout=60) as http:
        thread_id = http.post("/threads", json={}).json()["thread_id"]
        first = http.post(f"/threads/{thread_id}/runs/wait", json={
            "assistant_id": "parcel", "input": {}, "interrupt_before": ["inspect"]})
        assert first.status_code == 200, first.text
        resumed = http.post(f"/threads/{thread_id}/runs/wait",
                            json={"assistant_id": "parcel", "input": None})
        assert resumed.status_code == 200, resumed.text
        return first.json(), str(resumed.json()["seen"])


@pytest.mark.parametrize("serde, seen", [
    (None, "dict"),  # the strict default: the class is not called, its data is read
    ({"allowed_msgpack_modules": [["parcel_types", "Parcel"]]}, "Parcel"),
])
def test_the_worker_and_the_api_read_with_langgraph_jsons_allow_list(
        tmp_path: Path, start_server: StartServer, serde: dict[str, Any] | None,
        seen: str) -> None:
    log = tmp_path / "constructions.log"
    server = start_server("serve", config=_project(tmp_path, serde), args=["--workers", "1"],
                          env={"PARCEL_LOG": str(log)})
    values, read_as = _resume_sees(server.url)
    assert values["blob"] == {"label": "made"}  # as JSON, either way
    assert read_as == seen
    built = log.read_text().splitlines()
    if serde is None:
        assert len(built) == 1, built  # only the node's own Parcel("made")
    else:
        assert len(built) > 1, built  # read back as Parcel (the worker's resume, at least)
    server.stop()
    if serde is None:
        assert "Blocked deserialization of parcel_types.Parcel" in server.log()
