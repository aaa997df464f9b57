"""The flags of a worker's capacity, shared by ``treadle worker``, ``dev`` and ``serve``."""

from __future__ import annotations

import typer

_CONCURRENCY_OPTION = typer.Option(
    None, "--concurrency", min=1,
    help="Most runs a worker carries at once (default 1000: async runs are cheap; memory and "
    "loop lag hold it back first) [TREADLE_WORKER_CONCURRENCY].",
)
_MAX_RSS_OPTION = typer.Option(
    None, "--max-rss-mb", min=0,
    help="Stop claiming runs while the worker's memory is above this many MB (default: 80% "
    "of the container's limit or of RAM; 0: no bound) [TREADLE_WORKER_MAX_RSS_MB].",
)
_MAX_LAG_OPTION = typer.Option(
    None, "--max-loop-lag", min=0,
    help="Stop claiming runs while the worker's event loop lags more than this many seconds "
    "(default 2; 0: no bound) [TREADLE_WORKER_MAX_LOOP_LAG].",
)
