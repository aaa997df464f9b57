"""LangGraph's internals that treadle relies on, in one place.

treadle is pinned to ``langgraph>=1.2,<2``, but some of what it needs is not
LangGraph's public API: ``configurable`` keys LangGraph sets on a task's config
(``__pregel_task_id``, ``__pregel_checkpointer``, ``__pregel_runtime``), the names of
its internal channels as they appear in a checkpoint, its retry-policy matcher, the
shape of a function node's runnable, and langgraph-sdk's two concrete
``ServerRuntime`` classes. This module is the only one in treadle that imports them
(``tests/unit/test_langgraph_internals.py`` checks both that and each accessor
against the installed LangGraph, so a release that changes one fails there, by name).

Public API (``langgraph.graph``, ``langgraph.types``, ``langgraph.pregel.Pregel``,
``langgraph.checkpoint.base``, ``langchain_core``) is imported directly where used.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.runnables.config import run_in_executor
from langgraph._internal._constants import (
    CONFIG_KEY_CHECKPOINTER,
    CONFIG_KEY_RUNTIME,
    CONFIG_KEY_TASK_ID,
    ERROR,
    INTERRUPT,
    TASKS,
)
from langgraph._internal._serde import build_serde_allowlist
from langgraph.graph.state import _CHANNEL_BRANCH_TO
from langgraph.pregel._retry import _should_retry_on
from langgraph.types import RetryPolicy
from langgraph_sdk.runtime import _ExecutionRuntime, _ReadRuntime

__all__ = [
    "BRANCH_TO_PREFIX",
    "CONFIG_KEY_PREFIX",
    "ERROR_CHANNEL",
    "EXECUTION_RUNTIME",
    "INTERRUPT_CHANNEL",
    "READ_RUNTIME",
    "TASKS_CHANNEL",
    "checkpointer_of",
    "has_checkpointer",
    "in_task",
    "is_async_node",
    "node_accepts",
    "node_attempt",
    "node_coroutine",
    "node_function",
    "retries_on",
    "schema_types",
    "set_checkpointer",
    "task_id",
]

# --- checkpoint layout ------------------------------------------------------------------
#: The channel of a node's error in a checkpoint's pending writes
#: (``langgraph._internal._constants.ERROR``).
ERROR_CHANNEL: str = ERROR
#: The channel of an ``interrupt()`` in a checkpoint's pending writes
#: (``langgraph._internal._constants.INTERRUPT``).
INTERRUPT_CHANNEL: str = INTERRUPT
#: The channel holding pending ``Send`` packets (``langgraph._internal._constants.TASKS``).
TASKS_CHANNEL: str = TASKS
#: Prefix of the channel that triggers a node, ``branch:to:<node>``
#: (``langgraph.graph.state._CHANNEL_BRANCH_TO``).
BRANCH_TO_PREFIX: str = _CHANNEL_BRANCH_TO.format("")

# --- langgraph-sdk's ServerRuntime variants ---------------------------------------------
#: The ``ServerRuntime`` a graph factory gets when a run executes
#: (``langgraph_sdk.runtime._ExecutionRuntime``).
EXECUTION_RUNTIME: type[Any] = _ExecutionRuntime
#: The ``ServerRuntime`` a graph factory gets for reads and updates
#: (``langgraph_sdk.runtime._ReadRuntime``).
READ_RUNTIME: type[Any] = _ReadRuntime


# --- a task's config ----------------------------------------------------------------------
#: The prefix of the ``configurable`` keys LangGraph sets for its own use
#: (``langgraph._internal._constants.CONFIG_KEY_*``, such as ``__pregel_task_id``).
CONFIG_KEY_PREFIX = "__pregel_"


def _configurable(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return (config or {}).get("configurable") or {}


def task_id(config: Mapping[str, Any] | None) -> str | None:
    """The id of the LangGraph task whose config this is, or None outside a task
    (``configurable["__pregel_task_id"]``, ``CONFIG_KEY_TASK_ID``). Deterministic: the
    same for every attempt of a task, and when a resumed run plans it again."""
    value = _configurable(config).get(CONFIG_KEY_TASK_ID)
    return str(value) if value else None


def in_task(config: Mapping[str, Any] | None) -> bool:
    """Whether the config is a LangGraph task's (a graph called from inside a node)."""
    return CONFIG_KEY_TASK_ID in _configurable(config)


def checkpointer_of(config: Mapping[str, Any] | None) -> Any:
    """The checkpointer a call's config names, overriding the graph's own (or a parent
    graph's, handed to its subgraphs): ``configurable["__pregel_checkpointer"]``
    (``CONFIG_KEY_CHECKPOINTER``); None when it names none."""
    return _configurable(config).get(CONFIG_KEY_CHECKPOINTER)


def has_checkpointer(config: Mapping[str, Any] | None) -> bool:
    """Whether a call's config names a checkpointer (see :func:`checkpointer_of`), even
    None: LangGraph has set up checkpointing for the call already."""
    return CONFIG_KEY_CHECKPOINTER in _configurable(config)


def set_checkpointer(configurable: dict[str, Any], saver: Any) -> None:
    """Make a run use ``saver`` instead of the graph's checkpointer (see
    :func:`checkpointer_of`); ``configurable`` is the run config's, changed in place."""
    configurable[CONFIG_KEY_CHECKPOINTER] = saver


def node_attempt(config: Mapping[str, Any] | None) -> int:
    """Which attempt of its task a node call is (1 for the first, 2 for its first retry):
    ``configurable["__pregel_runtime"].execution_info.node_attempt``
    (``CONFIG_KEY_RUNTIME``); 1 when LangGraph does not say."""
    runtime = _configurable(config).get(CONFIG_KEY_RUNTIME)
    info = getattr(runtime, "execution_info", None)
    return int(getattr(info, "node_attempt", 1) or 1)


# --- serialization ---------------------------------------------------------------------
def schema_types(builder: Any) -> set[tuple[str, ...]]:
    """The ``(module, Class)`` types a ``StateGraph`` builder's schemas name (state, input,
    output, context, each node's and branch's input, the channels' value types), as
    ``StateGraph.compile`` collects them for its msgpack allow-list under
    ``LANGGRAPH_STRICT_MSGPACK`` (``langgraph._internal._serde.build_serde_allowlist``)."""
    schemas: list[Any] = [getattr(builder, name, None) for name in
                          ("state_schema", "input_schema", "output_schema", "context_schema")]
    schemas += [node.input_schema for node in getattr(builder, "nodes", {}).values()]
    schemas += [branch.input_schema for branches in getattr(builder, "branches", {}).values()
                for branch in branches.values()]
    return set(build_serde_allowlist(schemas=[s for s in schemas if s is not None],
                                     channels=getattr(builder, "channels", None)))


# --- retries -----------------------------------------------------------------------------
def retries_on(policy: RetryPolicy, exc: BaseException) -> bool:
    """Whether LangGraph retries ``exc`` under ``policy`` (its ``retry_on`` matched as
    LangGraph matches it: ``langgraph.pregel._retry._should_retry_on``)."""
    return isinstance(exc, Exception) and bool(_should_retry_on(policy, exc))


# --- a function node's runnable (langgraph._internal._runnable.RunnableCallable) ----------
def node_function(bound: Any) -> Callable[..., Any] | None:
    """The sync function a node runs (``RunnableCallable.func``); None if it has none."""
    return getattr(bound, "func", None)


def node_coroutine(bound: Any) -> Callable[..., Any] | None:
    """The async function a node runs (``RunnableCallable.afunc``); None if it has none.
    For a sync function LangGraph makes one that runs it on an executor."""
    return getattr(bound, "afunc", None)


def node_accepts(bound: Any) -> frozenset[str]:
    """The keyword arguments LangGraph passes the node's function besides the state
    (``config``, ``runtime``, ``writer``, ``store``, ...: ``RunnableCallable.func_accepts``)."""
    return frozenset(getattr(bound, "func_accepts", None) or ())


def is_async_node(bound: Any) -> bool:
    """Whether the node's body is a coroutine function. LangGraph gives a sync node an
    ``afunc`` too, a shim (``functools.partial(run_in_executor, ...)``) that runs it on
    the event loop's default executor: such a node is sync."""
    afunc = node_coroutine(bound)
    if afunc is None:
        return False
    return not (isinstance(afunc, functools.partial) and afunc.func is run_in_executor
                and node_function(bound) is not None)
