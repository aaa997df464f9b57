"""treadle.server.served_graphs: a schema LangGraph cannot render is null, and the log says why."""

from __future__ import annotations

import logging
import typing

import pytest
from langgraph.graph import StateGraph
from typing_extensions import TypedDict

from treadle.server.served_graphs import _schemas


class Good(TypedDict):
    n: int


class Thing:
    pass


class Bad(TypedDict):
    thing: Thing  # pydantic cannot render an arbitrary class


def _graph(state: type) -> typing.Any:
    builder: StateGraph[typing.Any, typing.Any, typing.Any, typing.Any] = StateGraph(state)
    builder.add_node("a", lambda s: {})
    builder.set_entry_point("a")
    return builder.compile()


def test_renderable_schemas_log_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="treadle.server"):
        schemas = _schemas(_graph(Good), "good")
    assert "n" in schemas["input_schema"]["properties"]
    assert schemas["state_schema"] is not None and schemas["context_schema"] is None
    assert caplog.records == []


def test_a_null_schema_logs_which_and_why_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="treadle.server"):
        schemas = _schemas(_graph(Bad), "agent")
    assert schemas["input_schema"] is None and schemas["state_schema"] is None
    assert schemas["config_schema"] is not None
    lines = [r.getMessage() for r in caplog.records]
    for name in ("input_schema", "output_schema", "state_schema"):
        assert f"graph agent: its {name} is null: PydanticSchemaGenerationError: Unable to " \
               f"generate pydantic-core schema for {Thing!r}. Set `arbitrary_types_allowed" \
               "=True` in the model_config to ignore this error or implement " \
               "`__get_pydantic_core_schema__` on your type to fully support it." in lines
    assert all("\n" not in line for line in lines)
    assert all(r.exc_info is None for r in caplog.records)  # no traceback unless debug


def test_the_traceback_is_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        name = "broken"

        def get_input_jsonschema(self) -> None:
            raise ValueError("no schema here\nsecond line")

        def __getattr__(self, name: str) -> typing.Any:
            raise AttributeError(name)

    with caplog.at_level(logging.DEBUG, logger="treadle.server"):
        schemas = _schemas(Broken())
    assert set(schemas.values()) == {None}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0].getMessage() == "graph broken: its input_schema is null: ValueError: " \
                                       "no schema here"
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug[0].exc_info is not None and debug[0].exc_info[0] is ValueError
