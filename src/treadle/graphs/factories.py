"""Graph factories: the signatures LangGraph Platform accepts, and its ``ServerRuntime``.

A ``langgraph.json`` graph may name a function that makes the graph. Like
langgraph-api, treadle accepts a factory taking

* nothing: ``make_graph()``;
* a config: ``make_graph(config)`` (one parameter not annotated as a runtime);
* a runtime: ``make_graph(runtime: ServerRuntime)``;
* both, in either order: ``make_graph(config, runtime: ServerRuntime)``.

A parameter is the runtime when its annotation is ``ServerRuntime`` (also
``ServerRuntime[Ctx]``, a string annotation naming it, or one of its two concrete
classes); of two unannotated parameters, the one named ``runtime`` is (langgraph-api
refuses that factory). Further parameters need defaults. The factory may be sync
or async, and may return the graph, or a context manager (sync or async, e.g.
``@contextlib.asynccontextmanager``) that yields it and is exited when the server
is done with the graph.

The runtime is langgraph-sdk's own ``ServerRuntime``: ``access_context`` says why
the server builds the graph (``"threads.create_run"`` to execute a run,
``"threads.read"`` and ``"threads.update"`` for a thread's state,
``"assistants.read"`` for schemas and drawings), ``store`` is the server's
long-term memory store, ``user`` is the authenticated user (:class:`RunUser`, from the
``langgraph_auth_user`` the server puts in the config; None without auth), and
``execution_runtime`` (with the run's ``context``) is set only for
``"threads.create_run"``.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import re
import typing
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import var_child_runnable_config
from langgraph.store.base import BaseStore
from langgraph_sdk.runtime import ServerRuntime

from treadle._langgraph import EXECUTION_RUNTIME, READ_RUNTIME
from treadle.errors import ConfigError, GraphLoadError

__all__ = ["ACCESS_CONTEXTS", "AccessContext", "Factory", "RunUser", "ServerRuntime", "request_user",
           "server_runtime"]

AccessContext = Literal["threads.create_run", "threads.update", "threads.read", "assistants.read"]
ACCESS_CONTEXTS: tuple[str, ...] = get_args(AccessContext)

_RUNTIME_CLASSES = (EXECUTION_RUNTIME, READ_RUNTIME)
# Names a string annotation may use for the runtime (``"ServerRuntime[Ctx]"``, ...).
_RUNTIME_NAME = re.compile(r"\b(ServerRuntime|_ExecutionRuntime|_ReadRuntime)\b")
# What annotations written under ``if TYPE_CHECKING:`` resolve to.
_LOCALNS: dict[str, Any] = {"ServerRuntime": ServerRuntime, "RunnableConfig": RunnableConfig}


def server_runtime(access_context: str, store: BaseStore, *, context: Any = None,
                   user: Any = None) -> Any:
    """The ``ServerRuntime`` a factory receives: the execution variant (carrying a copy
    of the run's ``context``) for ``"threads.create_run"``, the read variant otherwise;
    ``user``: the authenticated user (None without auth)."""
    if access_context not in ACCESS_CONTEXTS:
        raise ConfigError(f"unknown access_context {access_context!r} "
                         f"(one of {', '.join(ACCESS_CONTEXTS)})")
    if access_context == "threads.create_run":
        return EXECUTION_RUNTIME(access_context="threads.create_run", user=user, store=store,
                                 context=copy.copy(context))
    return READ_RUNTIME(access_context=access_context, user=user, store=store)


#: The authenticated user of the request being served (set by the authentication
#: middleware): ``runtime.user`` of the read contexts; a run's comes from its config.
request_user: ContextVar[Any] = ContextVar("treadle_request_user", default=None)


@dataclass(frozen=True)
class RunUser:
    """The authenticated user as a factory's ``runtime.user`` (langgraph_sdk's ``BaseUser``),
    rebuilt from the ``langgraph_auth_user`` dict the server puts in a run's (or a read's)
    ``configurable``: the dict crosses processes to ``treadle worker``, the request's user
    object does not."""

    data: dict[str, Any]

    @classmethod
    def of(cls, config: dict[str, Any] | None) -> RunUser | None:
        """The user named by ``config["configurable"]["langgraph_auth_user"]``, or None."""
        value = ((config or {}).get("configurable") or {}).get("langgraph_auth_user")
        return cls(dict(value)) if isinstance(value, dict) and "identity" in value else None

    @property
    def identity(self) -> str:
        return str(self.data["identity"])

    @property
    def display_name(self) -> str:
        return str(self.data.get("display_name") or self.identity)

    @property
    def is_authenticated(self) -> bool:
        return bool(self.data.get("is_authenticated", True))

    @property
    def permissions(self) -> list[str]:
        return [str(p) for p in self.data.get("permissions") or ()]

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True)
class Factory:
    """A graph factory and how to call it (which parameter gets what)."""

    func: Callable[..., Any]
    where: str  # "file.py:attr", for messages
    config_param: str | None = None
    runtime_param: str | None = None
    positional_only: tuple[str, ...] = ()  # parameters that cannot be passed by name
    config_by_star: bool = False  # make(*args): the config goes positionally

    @classmethod
    def classify(cls, func: Callable[..., Any], where: str) -> Factory:
        """How ``func`` takes its arguments (GraphLoadError for a signature no server
        could call)."""
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):  # no signature (some builtins): called bare
            return cls(func, where)
        params = list(sig.parameters.values())
        hints = _hints(func)
        named = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        runtime = [p for p in named if _is_runtime(hints.get(p.name, p.annotation))]
        if len(runtime) > 1:
            raise GraphLoadError(f"{where}: a graph factory takes one ServerRuntime, "
                                 f"not {len(runtime)} ({', '.join(p.name for p in runtime)})")
        if not runtime and len(named) == 2 and all(
                p.annotation is p.empty for p in named) and "runtime" in (p.name for p in named):
            runtime = [next(p for p in named if p.name == "runtime")]
        rest = [p for p in named if p not in runtime]
        config = next((p for p in rest if p.kind is not p.KEYWORD_ONLY), None)
        if config is None and len(rest) == 1:  # make(*, config)
            config = rest[0]
        missing = [p.name for p in rest if p is not config and p.default is p.empty]
        if missing:
            raise GraphLoadError(
                f"{where}: a graph factory takes a config and/or a ServerRuntime, but "
                f"{', '.join(missing)} is neither (give it a default, or annotate the "
                "runtime parameter as ServerRuntime)")
        chosen = [p for p in (config, *runtime) if p is not None]
        return cls(
            func, where,
            config_param=config.name if config is not None else None,
            runtime_param=runtime[0].name if runtime else None,
            positional_only=tuple(p.name for p in chosen if p.kind is p.POSITIONAL_ONLY),
            config_by_star=config is None and any(p.kind is p.VAR_POSITIONAL for p in params),
        )

    @property
    def takes_arguments(self) -> bool:
        return bool(self.config_param or self.runtime_param or self.config_by_star)

    @property
    def per_use(self) -> bool:
        """Whether servers call it for each use: when it takes a config or a runtime, or
        makes a context manager (``@contextmanager`` / ``@asynccontextmanager``); a
        factory without parameters that returns a graph is called once, its graph shared."""
        wrapped = getattr(self.func, "__wrapped__", None)
        return self.takes_arguments or inspect.isgeneratorfunction(wrapped) \
            or inspect.isasyncgenfunction(wrapped)

    def call(self, config: dict[str, Any], runtime: Any) -> Any:
        """``func(...)`` with the config and/or runtime it asks for: the graph, an
        awaitable or a context manager. The config is also the current runnable config
        while it runs (``langgraph.config.get_config()`` sees it)."""
        values = {self.config_param: config, self.runtime_param: runtime}
        args: list[Any] = [values[name] for name in self.positional_only]
        if self.config_by_star:
            args.append(config)
        kwargs = {name: value for name, value in values.items()
                  if name is not None and name not in self.positional_only}
        token = var_child_runnable_config.set(typing.cast(RunnableConfig, config))
        try:
            return self.func(*args, **kwargs)
        finally:
            var_child_runnable_config.reset(token)

    @asynccontextmanager
    async def open(self, config: dict[str, Any], runtime: Any) -> AsyncIterator[Any]:
        """What the factory makes, awaited or entered for the ``async with`` block (a
        sync factory runs in a thread)."""
        if inspect.iscoroutinefunction(self.func):
            value = await self.call(config, runtime)
        else:
            value = await asyncio.to_thread(self.call, config, runtime)
        if inspect.isawaitable(value):
            value = await value
        if hasattr(value, "__aenter__") and hasattr(value, "__aexit__"):
            async with value as made:
                yield made
        elif hasattr(value, "__enter__") and hasattr(value, "__exit__"):
            made = await asyncio.to_thread(value.__enter__)
            failed = False
            try:
                yield made
            except BaseException as exc:
                failed = True
                if not await asyncio.to_thread(value.__exit__, type(exc), exc, exc.__traceback__):
                    raise
            finally:
                if not failed:
                    await asyncio.to_thread(value.__exit__, None, None, None)
        else:
            yield value

    def build(self, config: dict[str, Any], runtime: Any) -> Any:
        """What the factory makes, from sync code (a context manager is entered and
        exited at once: the graph it yielded is returned)."""
        async def made() -> Any:
            async with self.open(config, runtime) as value:
                return value

        return asyncio.run(made())


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    target = func
    call = getattr(func, "__call__", None)  # noqa: B004 - a callable object's method
    if not inspect.isfunction(func) and not inspect.ismethod(func) and call is not None \
            and (inspect.isfunction(call) or inspect.ismethod(call)):
        target = call
    try:
        return typing.get_type_hints(target, localns=_LOCALNS)
    except Exception:  # noqa: BLE001 - unresolvable annotations: read them as written
        return {}


def _is_runtime(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty or annotation is None:
        return False
    if isinstance(annotation, str):
        return _RUNTIME_NAME.search(annotation) is not None
    if annotation is ServerRuntime:
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, _RUNTIME_CLASSES)
    origin = get_origin(annotation)
    if origin is ServerRuntime:
        return True
    if origin is not None:  # Annotated[ServerRuntime, ...], ServerRuntime[Ctx]
        args = get_args(annotation)
        return bool(args) and _is_runtime(args[0])
    return False
