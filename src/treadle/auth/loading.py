"""Finding the ``langgraph_sdk.Auth`` that guards the API: langgraph.json's
``"auth": {"path": "./auth.py:auth"}`` (custom) or ``TREADLE_AUTH=builtin``.

Everything that can be checked before serving is checked here, each failure one
:class:`~treadle.errors.ConfigError` line: the reference loads, names an ``Auth``, has an
``@auth.authenticate`` handler, and that handler asks only for parameters treadle passes.
"""

from __future__ import annotations

import inspect
from typing import Any

from treadle.errors import ConfigError

__all__ = ["AUTHENTICATE_PARAMETERS", "check_auth", "load_auth"]

#: The parameters ``@auth.authenticate`` may name (treadle passes them by name).
AUTHENTICATE_PARAMETERS = ("request", "headers", "authorization", "path", "method",
                           "path_params", "query_params", "scopes", "scope")


def load_auth(ref: str, source: str = "langgraph.json") -> Any:
    """The ``langgraph_sdk.Auth`` instance ``ref`` ("path.py:attr") names, checked."""
    from treadle.graphs.refs import load_object

    where = f'{source}: "auth.path" {ref!r}'
    return check_auth(load_object(ref, where), where)


def check_auth(found: Any, where: str) -> Any:
    """``found`` if it is a usable ``langgraph_sdk.Auth``; ConfigError naming ``where``."""
    from langgraph_sdk import Auth

    if not isinstance(found, Auth):
        raise ConfigError(f"{where} is a {type(found).__name__}, not a langgraph_sdk.Auth "
                          "(auth = Auth(), with an @auth.authenticate handler)")
    handler = found._authenticate_handler
    if handler is None:
        raise ConfigError(f"{where} has no @auth.authenticate handler: every request would "
                          "be anonymous; add one")
    _check_parameters(handler, where)
    return found


def _check_parameters(handler: Any, where: str) -> None:
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read the authenticate handler's signature") from exc
    for p in params:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in AUTHENTICATE_PARAMETERS:
            continue
        if p.default is not p.empty:
            continue
        hint = " (treadle does not pass the request body)" if p.name == "body" else ""
        raise ConfigError(f"{where}: the authenticate handler asks for {p.name!r}{hint}; it "
                          f"may ask for {', '.join(AUTHENTICATE_PARAMETERS)}")
