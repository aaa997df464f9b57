"""The hook a cluster run hangs on the node proxies: one :class:`Execution` per run attempt.

The runtime layer knows nothing of queues or workers. A worker that executes a
queued run puts an ``Execution`` in the run's context (``RunContext.execution``);
``treadle.compile``'s graph then claims the thread for that run's epoch (so a worker
whose lease was taken over can never write again), and every node proxy asks it
before starting a node body (:meth:`enter`, which holds new bodies back while the
worker drains) and, for nodes placed ``remote``, hands the body to it
(:meth:`dispatch`, which turns it into a durable task any worker can run).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Execution"]


class Execution:
    """One attempt of a cluster run on this worker (its lease's epoch)."""

    def __init__(self, run_id: str, epoch: int, graph_id: str) -> None:
        self.run_id = run_id
        self.epoch = epoch
        self.graph_id = graph_id
        self.token = f"{run_id}:{epoch}"
        # Set once the worker has committed this attempt's claim of the thread (it does
        # so before reading the thread, so nothing a stale attempt writes can slip in
        # between what it read and its own first write).
        self.claimed = False
        self.in_flight = 0
        self._open = asyncio.Event()
        self._open.set()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- drain gate ----------------------------------------------------------------
    async def enter(self) -> None:
        """Wait until a node body may start; count it as in flight."""
        await self._open.wait()
        self.in_flight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self._idle.set()

    def close_gate(self) -> None:
        """No new node body starts from now on (those waiting stay parked until
        the run is cancelled); bodies already running finish."""
        self._open.clear()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the bodies in flight to end."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # --- remote placement ------------------------------------------------------------
    async def dispatch(self, node: str, input: Any, config: dict[str, Any]) -> Any:
        """Run ``node``'s body elsewhere and return its output. The base class has no
        cluster: the worker's subclass implements it."""
        raise NotImplementedError
