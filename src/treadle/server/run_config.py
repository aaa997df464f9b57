"""Run config keys a client may not send over the HTTP API.

In-process, a run config may steer treadle itself (``checkpoint_store`` names another
store, ``runtime="distributed"`` queues the call, ``__pregel_*`` / ``__treadle_*`` keys
carry LangGraph's and treadle's internals). Over HTTP those would let a client choose
where the server's workers write (a file path, a database, an address that never
answers) or steer a run from inside, so every config a client sends (runs, crons,
assistants, which feed runs, and the checkpoint of a state read or update) is checked
here: such a key is a RefusedConfigError (HTTP 400) naming it. Everything else in a config is the graph's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from treadle._langgraph import CONFIG_KEY_PREFIX
from treadle.errors import RefusedConfigError
from treadle.langgraph_http import HeaderPatterns

__all__ = ["INTERNAL_PREFIXES", "REFUSED_KEYS", "check_client_config", "run_headers"]

# Keys refused at the top level of a config and in its ``configurable``.
REFUSED_KEYS = ("checkpoint_store",)
# ``configurable`` keys that belong to LangGraph (``__pregel_*``) or treadle (``__treadle_*``).
INTERNAL_PREFIXES = (CONFIG_KEY_PREFIX, "__treadle_")
# ``runtime`` may only say what the server does anyway.
_RUNTIME_OK = ("local", None)


def _steers(key: str, value: Any) -> bool:
    return key in REFUSED_KEYS or key.startswith(INTERNAL_PREFIXES) or (
        key == "runtime" and value not in _RUNTIME_OK)


def _refused(config: Mapping[str, Any], prefix: str) -> str | None:
    for key, value in config.items():
        if isinstance(key, str) and _steers(key, value):
            return f"{prefix}{key}"
    return None


def run_headers(patterns: HeaderPatterns, headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers langgraph.json's ``http.configurable_headers`` copies into a
    run's ``configurable``, but those named as a key that steers treadle (dropped, not
    refused: a client does not choose which headers proxies add)."""
    return {k: v for k, v in patterns.copied(headers).items() if not _steers(k, v)}


def check_client_config(config: Mapping[str, Any] | None, where: str = "config") -> None:
    """RefusedConfigError (HTTP 400) if ``config`` (a run config or a checkpoint reference, as a client sent it or
    an assistant stored it) holds a key that steers treadle; ``where`` names it."""
    if not isinstance(config, Mapping):
        return
    found = _refused(config, f"{where}.")
    inner = config.get("configurable")
    if found is None and isinstance(inner, Mapping):
        found = _refused(inner, f"{where}.configurable.")
    if found is not None:
        raise RefusedConfigError(f"{found} is not accepted over the HTTP API: it steers where "
                                 "and how the server runs graphs (checkpoint_store, runtime "
                                 "other than 'local', __pregel_* and __treadle_* keys are "
                                 "refused); remove it")
