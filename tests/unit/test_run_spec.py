"""RunSpec: what a queued run asks for, and its versioned payload."""

from typing import Any

import pytest

from treadle.cluster.codec import decode, encode
from treadle.cluster.spec import VERSION, RunSpec
from treadle.errors import InputError, RunSpecVersionError


def _full() -> RunSpec:
    return RunSpec(
        input={"n": 1}, command=None, config={"configurable": {"k": "v"}, "metadata": {"m": 1}},
        kwargs={"stream_mode": ["values"], "subgraphs": True}, assistant_id="a1",
        multitask_strategy="reject", webhook="http://hook", on_completion="delete",
        thread_record=True, stream_mode=["values", "updates"], context={"c": 2},
        interrupt_before=["n1"], interrupt_after="*", trace={"traceparent": "00-x"})


def test_round_trip() -> None:
    spec = _full()
    assert RunSpec.decode(spec.encode()) == spec
    assert RunSpec.decode(RunSpec().encode()) == RunSpec()


def test_payload_is_versioned_with_the_keys_of_the_unversioned_form() -> None:
    doc = decode(_full().encode())
    assert doc["v"] == VERSION
    # An older reader's keys, unchanged: a run queued by this code is readable by it.
    assert doc["input"] == {"n": 1} and doc["trace"] == {"traceparent": "00-x"}
    assert doc["kwargs"]["subgraphs"] is True and doc["thread_record"] is True
    assert doc["stream_mode"] == ["values", "updates"]


def test_reads_the_server_dict_form_written_before_versions() -> None:
    old: dict[str, Any] = {"input": {"n": 0}, "command": None, "config": {"configurable": {}},
           "kwargs": {"stream_mode": ["values"], "subgraphs": False},
           "assistant_id": "a", "multitask_strategy": "enqueue", "webhook": None,
           "on_completion": None, "thread_record": True, "stream_mode": ["values"],
           "context": None, "interrupt_before": None, "interrupt_after": None,
           "trace": {"traceparent": "t"}}
    spec = RunSpec.decode(encode(old))
    assert spec.input == {"n": 0} and spec.assistant_id == "a" and spec.thread_record
    assert spec.trace == {"traceparent": "t"} and spec.kwargs["stream_mode"] == ["values"]


def test_reads_the_client_dict_form_written_before_versions() -> None:
    spec = RunSpec.decode(encode({"input": [1], "config": {"x": 1}, "kwargs": {}, "trace": None}))
    assert spec == RunSpec(input=[1], config={"x": 1})


def test_unknown_version_is_a_clear_error() -> None:
    with pytest.raises(RunSpecVersionError, match="version 99.*reads versions 0 to"):
        RunSpec.decode(encode({"v": 99, "input": 1}))
    assert issubclass(RunSpecVersionError, InputError)


def test_not_a_spec() -> None:
    with pytest.raises(RunSpecVersionError, match="not a run spec"):
        RunSpec.decode(encode([1, 2]))
    assert RunSpec.read(b"garbage") is None
    assert RunSpec.read(encode({"input": 1})) == RunSpec(input=1)
