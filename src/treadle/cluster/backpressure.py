"""When a worker stops claiming: memory and event-loop lag, not a small slot count.

Async runs are cheap (a coroutine and its state, tens of kilobytes), so a worker carries as
many as ``worker_concurrency`` (1,000 by default) and lets two measures hold it back:

* its resident memory (RSS) above ``worker_max_rss_mb`` (unset: 80 % of the memory it may
  use, the container's limit or else the machine's RAM): the runs in flight finish and
  release theirs before it takes more;
* its event loop lagging more than ``worker_max_loop_lag`` seconds (2 s: the CPU is badly
  saturated, another run would only slow every run in flight; a worker beside it takes it
  instead). Not lower: a loop busy with 1,000 runs lags half a second at times, and pausing
  then leaves the CPU idle while the runs in flight await their model calls (measured with
  bench.capacity on treadle serve: T 19.6 s with a 0.5 s bound, 17.7 s with 2 s, 17.0 s
  without).

Either one pauses claiming, never a run in flight. Sync node bodies keep their own bound
(``TREADLE_THREAD_WORKERS``, :mod:`treadle.runtime.pools`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from treadle.config import Settings

__all__ = ["PAUSE", "Backpressure", "memory_budget", "rss_bytes"]

log = logging.getLogger("treadle.worker")

#: Seconds between two looks at the loop's lag.
LAG_EVERY = 0.1
#: Seconds between two looks at memory and loop lag while claiming is paused.
PAUSE = 0.05
#: Shortest seconds between two "paused claiming" log lines.
LOG_EVERY = 30.0
_MB = 1024 * 1024


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _cgroup_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:  # "max" or a huge number: no limit
            return int(raw)
    return None


def memory_budget(settings: Settings) -> int | None:
    """The RSS in bytes above which a worker stops claiming (None: no bound)."""
    if settings.worker_max_rss_mb is not None:
        return int(settings.worker_max_rss_mb * _MB) or None
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        physical = 0
    limits = [x for x in (_cgroup_limit(), physical) if x]
    return int(min(limits) * 0.8) if limits else None


class Backpressure:
    """Says whether a worker may claim another run now (see the module)."""

    def __init__(self, settings: Settings) -> None:
        self.max_rss = memory_budget(settings)
        self.max_lag = settings.worker_max_loop_lag or None
        self.lag = 0.0  # seconds the loop was late at its last look
        self.paused = 0  # times claiming paused (tests and logs)
        self._reason: str | None = None
        self._logged = -LOG_EVERY  # monotonic time of the last "paused" line
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring the running loop's lag (when a lag bound is set)."""
        if self.max_lag is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._measure(),
                                                                 name="treadle-loop-lag")

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _measure(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            await asyncio.sleep(LAG_EVERY)
            self.lag = max(0.0, loop.time() - t0 - LAG_EVERY)

    def reason(self) -> str | None:
        """Why claiming should pause now, or None."""
        if self.max_lag is not None and self.lag > self.max_lag:
            return (f"its event loop lags {self.lag:.2f}s (bound {self.max_lag:g}s, "
                    "TREADLE_WORKER_MAX_LOOP_LAG)")
        if self.max_rss is not None:
            rss = rss_bytes()
            if rss is not None and rss > self.max_rss:
                return (f"its memory is {rss / _MB:.0f} MB (bound {self.max_rss / _MB:.0f} MB, "
                        "TREADLE_WORKER_MAX_RSS_MB)")
        return None

    def check(self) -> bool:
        """True when claiming may go on (logs a pause, at most every LOG_EVERY seconds)."""
        reason = self.reason()
        if reason is not None and self._reason is None:
            self.paused += 1
            now = time.monotonic()
            if now - self._logged >= LOG_EVERY:
                self._logged = now
                log.info("worker pauses claiming while %s", reason)
        self._reason = reason
        return reason is None
