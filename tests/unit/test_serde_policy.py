"""Safe deserialization (langgraph.json ``checkpointer.serde``): reading a checkpoint, a
task write or a run payload never constructs a class outside the allow-lists, never
unpickles unless told to, and graphs shipped by value are refused unless the worker
trusts its store."""

from __future__ import annotations

import operator
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import cloudpickle
import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import START, StateGraph

import treadle
from treadle.cluster import codec
from treadle.config import Settings, get_settings
from treadle.errors import ConfigError, GraphLoadError, StoreDataError
from treadle.graphs import by_value
from treadle.graphs.registry import GraphRegistry
from treadle.langgraph_json import load
from treadle.store import open_store, serde_policy
from treadle.store.base import Store
from treadle.store.checkpointer import TreadleSaver

BUILT: list[str] = []  # what the side-effecting classes below did


@dataclass
class Boom:
    """Constructing one has a side effect: a deserializer that builds it leaves a trace."""

    label: str

    def __post_init__(self) -> None:
        BUILT.append(self.label)


@dataclass
class Plan:
    steps: list[str]


class PlanState(TypedDict):
    plan: Plan
    log: Annotated[list[str], operator.add]


@dataclass
class Receipt:
    total: int


class ReceiptState(TypedDict):
    receipt: Receipt


def _mark(label: str) -> str:
    BUILT.append(label)
    return label


class Hostile:
    """Unpickling one runs code (appends to BUILT)."""

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _mark, ("unpickled",)


BOOM = (__name__, "Boom")


@pytest.fixture(autouse=True)
def default_policy() -> Iterator[None]:
    serde_policy.configure(None)
    BUILT.clear()
    yield
    serde_policy.configure(None)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path}/s.db", auto_migrate=True)
    yield s
    s.close()


def _put(saver: TreadleSaver, value: Any) -> RunnableConfig:
    """A checkpoint of thread t whose channel x holds ``value``, plus a task write of it."""
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = {"x": value}
    checkpoint["channel_versions"] = {"x": saver.get_next_version(None)}
    config = saver.put({"configurable": {"thread_id": "t", "checkpoint_ns": ""}}, checkpoint,
                       {"source": "loop", "step": 1, "parents": {}},
                       dict(checkpoint["channel_versions"]))
    saver.put_writes(config, [("x", value)], "task-1")
    return config


def _read(saver: TreadleSaver, config: RunnableConfig) -> tuple[Any, Any]:
    got = saver.get_tuple(config)
    assert got is not None
    assert got.pending_writes is not None
    return got.checkpoint["channel_values"]["x"], got.pending_writes[0][2]


def test_a_checkpoint_of_a_class_outside_the_allow_list_is_not_constructed(store: Store) -> None:
    config = _put(TreadleSaver(store), Boom("written"))
    BUILT.clear()
    value, write = _read(TreadleSaver(store), config)
    assert BUILT == []  # __post_init__ never ran: the class was not called
    assert value == {"label": "written"} and write == {"label": "written"}  # its data
    # LangGraph's safe types still round-trip under the strict default.
    config = _put(TreadleSaver(store), [HumanMessage("hi")])
    value, _ = _read(TreadleSaver(store), config)
    assert isinstance(value[0], HumanMessage) and value[0].content == "hi"


def test_an_allowed_class_round_trips(store: Store, tmp_path: Path) -> None:
    file = tmp_path / "langgraph.json"
    file.write_text('{"graphs": {"g": "m:g"}, "checkpointer": {"serde": '
                    f'{{"allowed_msgpack_modules": [["{BOOM[0]}", "Boom"]]}}}}}}')
    serde_policy.configure(load(file).serde)
    config = _put(TreadleSaver(store), Boom("allowed"))
    BUILT.clear()
    value, write = _read(TreadleSaver(store), config)
    assert BUILT == ["allowed", "allowed"]  # the checkpoint's value and the task write's
    assert value == Boom("allowed") and write == Boom("allowed")
    # The run codec (payloads, results, events) follows the same policy.
    assert codec.decode(codec.encode({"v": Boom("coded")})) == {"v": Boom("coded")}
    serde_policy.configure(None)
    BUILT.clear()
    assert codec.decode(codec.encode({"v": Boom("coded")})) == {"v": {"label": "coded"}}
    assert BUILT == ["coded"]  # built once by the test itself, not by decode


def test_true_allows_any_class(store: Store) -> None:
    serde_policy.configure({"allowed_msgpack_modules": True})
    config = _put(TreadleSaver(store), Boom("any"))
    value, _ = _read(TreadleSaver(store), config)
    assert value == Boom("any")


def test_the_graphs_schema_types_are_allowed(tmp_path: Path) -> None:
    def plan(state: PlanState) -> dict[str, Any]:
        return {"plan": Plan(["a", "b"]), "log": ["planned"]}

    builder = StateGraph(PlanState)
    builder.add_node("plan", plan)
    builder.add_edge(START, "plan")
    config: RunnableConfig = {"configurable": {"thread_id": "p"}}
    with treadle.compile(builder, store=f"sqlite:///{tmp_path}/g.db") as graph:
        graph.invoke({"plan": Plan([]), "log": []}, config)
    with treadle.compile(builder, store=f"sqlite:///{tmp_path}/g.db") as graph:
        assert graph.get_state(config).values["plan"] == Plan(["a", "b"])


def test_a_subgraphs_schema_types_are_allowed(tmp_path: Path) -> None:
    assert codec.decode(codec.encode(Receipt(1))) == {"total": 1}  # not yet allowed
    sub = StateGraph(ReceiptState)
    sub.add_node("pay", lambda s: {"receipt": Receipt(2)})
    sub.add_edge(START, "pay")
    parent = StateGraph(PlanState)
    parent.add_node("checkout", sub.compile())
    parent.add_edge(START, "checkout")
    with treadle.compile(parent.compile(), store=f"sqlite:///{tmp_path}/s.db"):
        assert codec.decode(codec.encode(Receipt(3))) == Receipt(3)


def test_pickle_fallback_is_off_by_default(store: Store) -> None:
    assert serde_policy.current().pickle_fallback is False
    assert TreadleSaver(store).serde.pickle_fallback is False  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="Type is not msgpack serializable"):
        _put(TreadleSaver(store), Hostile())
    # A pickled row (written by a saver that had the fallback) is refused, not unpickled.
    config = _put(TreadleSaver(store, serde=JsonPlusSerializer(pickle_fallback=True)), Hostile())
    assert BUILT == []
    with pytest.raises(StoreDataError, match="refusing to unpickle a stored value"):
        TreadleSaver(store).get_tuple(config)
    with pytest.raises(StoreDataError, match="pickle_fallback"):
        codec.decode(b"pickle\n" + pickle.dumps(Hostile()))
    assert BUILT == []
    # langgraph.json's pickle_fallback: true turns it on.
    serde_policy.configure({"pickle_fallback": True})
    TreadleSaver(store).get_tuple(config)
    assert "unpickled" in BUILT


@pytest.mark.parametrize("serde, problem", [
    ({"allowed_msgpack_modules": ["my_agent.Plan"]}, "allowed_msgpack_modules\" must be true"),
    ({"allowed_json_modules": [["only-module"]]}, "allowed_json_modules\" must be true"),
    ({"pickle_fallback": "yes"}, "pickle_fallback\" must be a boolean"),
])
def test_a_malformed_serde_config_is_one_line(serde: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        serde_policy.parse(serde)
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_graphs_shipped_by_value_are_refused_unless_the_worker_trusts_the_store(
        store: Store, tmp_path: Path) -> None:
    assert Settings().allow_pickled_graphs is False  # TREADLE_ALLOW_PICKLED_GRAPHS: off
    blob = cloudpickle.dumps(Hostile())
    import hashlib

    graph_id = by_value.PICKLE_PREFIX + hashlib.sha256(blob).hexdigest()
    store.put_graph(graph_id, blob)
    url = f"sqlite:///{tmp_path}/s.db"
    registry = GraphRegistry(store, {}, allow_pickled=get_settings(store=url).allow_pickled_graphs,
                             settings=get_settings(store=url))
    with pytest.raises(GraphLoadError, match="does not serve graph"):
        registry.get(graph_id)
    assert BUILT == []  # never unpickled
    trusting = GraphRegistry(store, {}, allow_pickled=True, settings=get_settings(store=url))
    with pytest.raises(Exception):  # noqa: B017 - what matters is that it ran the code
        trusting.get(graph_id)
    assert BUILT == ["unpickled"]
