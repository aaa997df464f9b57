"""treadle's per-run state, carried through LangGraph under one ``configurable`` key.

LangGraph hands a run's ``configurable`` to every task, subgraph and checkpointer call
of the run. treadle rides along with one value there, a :class:`RunContext` under
:data:`RUN_KEY`: the run's concurrency limits, its claim of the thread (the fencing
token its writes carry), and, for a cluster run, the :class:`~treadle.runtime.execution.Execution`
running it. The key starts with ``__`` so that LangGraph keeps it out of checkpoint
metadata, and LangChain out of tracing metadata.

It never leaves the process: what a node body running elsewhere (a process-pool
process, another worker) receives is :func:`treadle.runtime.pools.plain_config`, the run
config's scalar values only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from treadle.runtime.execution import Execution
    from treadle.runtime.pools import RunLimits

__all__ = ["RUN_KEY", "RunContext", "execution_of", "fencing_token", "limits_of", "run_context",
           "with_run_context"]

#: The ``configurable`` key of a run's :class:`RunContext`.
RUN_KEY = "__treadle_run"


@dataclass(frozen=True, slots=True)
class RunContext:
    """What treadle knows about the run a config belongs to."""

    #: The cluster run attempt executing it (set by the worker), None for a local run.
    execution: Execution | None = None
    #: The run's concurrency bound over node bodies (None: not a run, e.g. get_state).
    limits: RunLimits | None = None
    #: The claim token its checkpoint writes carry (None: it does not write).
    token: str | None = None
    #: The future of its claim of the thread (a failed claim explains a refused write).
    claim: Any = None
    #: Its thread_id was made up by treadle (none was given).
    new_thread: bool = False
    #: treadle prepared this config already (LangGraph passes it on to its own calls).
    prepared: bool = False

    def replace(self, **changes: Any) -> RunContext:
        return dataclasses.replace(self, **changes)


_NONE = RunContext()


def run_context(config: Mapping[str, Any] | None) -> RunContext:
    """The run context in a run config; an empty one (all None/False) if it has none."""
    ctx = ((config or {}).get("configurable") or {}).get(RUN_KEY)
    return ctx if isinstance(ctx, RunContext) else _NONE


def with_run_context(configurable: dict[str, Any], ctx: RunContext) -> None:
    """Put ``ctx`` in a run config's ``configurable`` (in place)."""
    configurable[RUN_KEY] = ctx


def execution_of(config: Mapping[str, Any] | None) -> Execution | None:
    """The cluster run attempt executing this run, or None."""
    return run_context(config).execution


def limits_of(config: Mapping[str, Any] | None) -> RunLimits | None:
    """The run's concurrency limits, or None."""
    return run_context(config).limits


def fencing_token(config: Mapping[str, Any] | None) -> str | None:
    """The claim token the run's checkpoint writes carry, or None (unfenced)."""
    return run_context(config).token
