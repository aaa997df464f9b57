"""Thread TTL configuration: langgraph.json ``checkpointer.ttl``, TREADLE_THREAD_TTL /
TREADLE_TTL_SWEEP_INTERVAL, and a thread's ``ttl`` as langgraph-sdk sends it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from treadle.config import Settings
from treadle.errors import ConfigError, InputError
from treadle.langgraph_json import load, thread_ttl
from treadle.server.ttl_sweep import Retention, retention_of, thread_ttl_of
from treadle.store.retention import ThreadTTL


def test_checkpointer_ttl_gets_langgraph_platforms_defaults() -> None:
    assert thread_ttl(None, "x") is None
    assert thread_ttl({"default_ttl": 60}, "x") == {
        "strategy": "delete", "default_ttl": 60, "sweep_interval_minutes": 5,
        "sweep_limit": 1000}
    assert thread_ttl({"strategy": "keep_latest", "sweep_interval_minutes": 0.5,
                       "sweep_limit": 10, "default_ttl": None}, "x") == {
        "strategy": "keep_latest", "default_ttl": None, "sweep_interval_minutes": 0.5,
        "sweep_limit": 10}
    assert thread_ttl(30, "TREADLE_THREAD_TTL")["default_ttl"] == 30  # type: ignore[index]


@pytest.mark.parametrize(("ttl", "message"), [
    ({"strategy": "archive"}, '"checkpointer.ttl.strategy" must be "delete" or "keep_latest"'),
    ({"default_ttl": 0}, '"checkpointer.ttl.default_ttl" must be a number above 0'),
    ({"default_ttl": "1d"}, '"checkpointer.ttl.default_ttl" must be a number above 0'),
    ({"default_ttl": True}, '"checkpointer.ttl.default_ttl" must be a number above 0'),
    ({"sweep_interval_minutes": -5}, '"checkpointer.ttl.sweep_interval_minutes" must be a'),
    ({"sweep_limit": 2.5}, '"checkpointer.ttl.sweep_limit" must be a whole number above 0'),
    ("60", '"checkpointer.ttl" must be an object'),
])
def test_a_bad_checkpointer_ttl_is_one_line(ttl: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        thread_ttl(ttl, "langgraph.json")
    assert "\n" not in str(err.value) and str(err.value).startswith("langgraph.json: ")


def test_load_honours_checkpointer_ttl_and_refuses_a_bad_one(tmp_path: Path) -> None:
    config = tmp_path / "langgraph.json"
    doc: dict[str, Any] = {"graphs": {"g": "./g.py:graph"},
                           "checkpointer": {"ttl": {"strategy": "keep_latest", "default_ttl": 5}}}
    config.write_text(json.dumps(doc))
    assert load(config).thread_ttl == {"strategy": "keep_latest", "default_ttl": 5,
                                       "sweep_interval_minutes": 5, "sweep_limit": 1000}
    doc["checkpointer"]["ttl"]["sweep_limit"] = "all"
    config.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match='"checkpointer.ttl.sweep_limit" must be a'):
        load(config)  # the key table's type check comes first
    doc["checkpointer"]["ttl"] = {"strategy": "never"}
    config.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="strategy"):
        load(config)


def test_the_policy_reads_the_file_then_the_environment() -> None:
    assert retention_of(Settings(), None) == Retention(None, 300.0, 1000)
    config = thread_ttl({"default_ttl": 60, "strategy": "keep_latest",
                         "sweep_interval_minutes": 2, "sweep_limit": 7}, "x")
    assert retention_of(Settings(), config) == Retention(ThreadTTL(60, "keep_latest"), 120.0, 7)
    assert retention_of(Settings(ttl_sweep_interval=0.25), config).interval == 0.25
    # TREADLE_THREAD_TTL replaces checkpointer.ttl whole, as LANGGRAPH_THREAD_TTL does
    assert retention_of(Settings(thread_ttl="15"), config) == Retention(ThreadTTL(15), 300.0,
                                                                        1000)
    assert retention_of(Settings(thread_ttl='{"default_ttl": 1, "strategy": "keep_latest"}'),
                        None).default == ThreadTTL(1, "keep_latest")
    for bad, message in (("soon", "TREADLE_THREAD_TTL must be minutes"),
                         ('{"strategy": "x"}', "TREADLE_THREAD_TTL: ")):
        with pytest.raises(ConfigError, match=message):
            retention_of(Settings(thread_ttl=bad), None)


def test_settings_refuse_a_sweep_interval_that_is_not_positive(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from treadle.config import get_settings

    monkeypatch.setenv("TREADLE_TTL_SWEEP_INTERVAL", "0")
    with pytest.raises(ConfigError, match="TREADLE_TTL_SWEEP_INTERVAL"):
        get_settings()


@pytest.mark.parametrize(("sent", "ttl"), [
    (None, None), (5, ThreadTTL(5)), (0.5, ThreadTTL(0.5)),
    ({"ttl": 43200, "strategy": "delete"}, ThreadTTL(43200)),  # what the SDK sends
    ({"ttl": 10, "strategy": "keep_latest"}, ThreadTTL(10, "keep_latest")),
    ({"ttl": 10}, ThreadTTL(10)), ({"default_ttl": 10}, ThreadTTL(10)),
])
def test_a_threads_ttl_as_the_sdk_sends_it(sent: Any, ttl: ThreadTTL | None) -> None:
    assert thread_ttl_of(sent) == ttl


@pytest.mark.parametrize("sent", [0, -1, "5", True, {"ttl": None}, {"ttl": 5, "strategy": 1},
                                  {"ttl": 5, "strategy": "archive"}, {"ttl": 5, "when": 1},
                                  [5], 10 ** 12])
def test_a_bad_thread_ttl_is_an_input_error(sent: Any) -> None:
    with pytest.raises(InputError):
        thread_ttl_of(sent)


def test_deploy_k8s_refuses_a_bad_checkpointer_ttl(tmp_path: Path) -> None:
    from treadle.deploy.manifests import K8sOptions, render

    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"g": "./g.py:graph"},
                                  "checkpointer": {"ttl": {"strategy": "forever"}}}))
    with pytest.raises(ConfigError, match='"checkpointer.ttl.strategy" must be "delete"'):
        render(K8sOptions(config=config, allow_unauthenticated=True))
    config.write_text(json.dumps({"graphs": {"g": "./g.py:graph"},
                                  "checkpointer": {"ttl": {"strategy": "keep_latest"}}}))
    render(K8sOptions(config=config, allow_unauthenticated=True))
