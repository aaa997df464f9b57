"""Graph references: ``path/to/file.py:attr`` or ``module.path:attr`` -> a LangGraph graph.

The attribute may be a ``StateGraph`` builder, a compiled graph, a
:class:`~treadle.TreadleGraph`, or a factory returning one of those, with any
signature LangGraph Platform accepts (see :mod:`treadle.graphs.factories`). Every failure is a
:class:`~treadle.errors.GraphLoadError` whose message is one line saying what was
not found; an exception raised by the user's code is chained (``raise ... from``)
so ``treadle --debug`` can show its traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from langgraph.graph.state import StateGraph
from langgraph.pregel import Pregel
from langgraph.store.base import BaseStore

from treadle.errors import GraphLoadError
from treadle.graphs.factories import Factory, server_runtime

__all__ = ["as_graph", "factory_failed", "load_factory", "load_graph", "load_object", "made_graph",
           "split_ref"]

_FORM = "path/to/file.py:attr or module.path:attr"


def split_ref(ref: str) -> tuple[str, str]:
    """``"a/b.py:graph"`` -> ``("a/b.py", "graph")``; the last ``:`` separates them."""
    target, sep, attr = ref.strip().rpartition(":")
    if not sep or not target or not attr:
        raise GraphLoadError(f"graph reference {ref!r} is not of the form {_FORM}")
    if not attr.isidentifier():
        raise GraphLoadError(
            f"graph reference {ref!r}: {attr!r} is not an attribute name (expected {_FORM})"
        )
    return target, attr


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target or (
        os.altsep is not None and os.altsep in target
    )


def load_graph(
    ref: str, *, config: dict[str, Any] | None = None, access_context: str = "assistants.read",
    store: BaseStore | None = None,
) -> StateGraph[Any, Any, Any, Any] | Pregel[Any, Any, Any, Any]:
    """Resolve ``ref`` to a ``StateGraph`` builder or a compiled graph (``Pregel``).

    A factory is called with what it asks for: ``config`` (default
    ``{"configurable": {}}``) and a ``ServerRuntime`` for ``access_context`` whose
    store is ``store`` (default an empty ``InMemoryStore``); a context manager it
    returns is entered and exited. A :class:`~treadle.TreadleGraph` yields the
    compiled graph it wraps, with treadle's node wrappers removed, ready for
    ``treadle.compile`` again.
    """
    obj, where = _resolve(ref)
    graph = as_graph(obj)
    if graph is not None:
        return graph
    factory = _factory(obj, where)
    if factory is None:
        raise GraphLoadError(
            f"{where} is {_a(obj)}, not a LangGraph graph "
            "(a StateGraph, a compiled graph, a TreadleGraph, or a function returning one)"
        )
    if store is None:
        from langgraph.store.memory import InMemoryStore

        store = InMemoryStore()
    runtime = server_runtime(access_context, store)
    try:
        made = factory.build(config if config is not None else {"configurable": {}}, runtime)
    except KeyboardInterrupt:
        raise
    except GraphLoadError:
        raise
    except BaseException as exc:
        raise factory_failed(where, exc) from exc
    return made_graph(made, where)


def factory_failed(where: str, exc: BaseException) -> GraphLoadError:
    """The error for a factory that raised ``exc`` (chain it: ``raise ... from exc``)."""
    return GraphLoadError(f"{where}() raised {_summary(exc)}")


def load_factory(ref: str) -> Factory | None:
    """The factory ``ref`` names, or None when it names a graph. Servers call a factory
    each time they need the graph, as LangGraph Platform does."""
    obj, where = _resolve(ref)
    if as_graph(obj) is not None:
        return None
    return _factory(obj, where)


def made_graph(made: Any, where: str) -> StateGraph[Any, Any, Any, Any] | Pregel[Any, Any, Any, Any]:
    """What a factory made, as a graph (GraphLoadError if it is something else)."""
    graph = as_graph(made)
    if graph is None:
        hint = (" (decorate it with contextlib.asynccontextmanager to yield the graph)"
                if inspect.isasyncgen(made) or inspect.isgenerator(made) else "")
        raise GraphLoadError(
            f"{where}() returned {_a(made)}, not a LangGraph graph "
            f"(a StateGraph, a compiled graph or a TreadleGraph){hint}"
        )
    return graph


def load_object(ref: str, where: str | None = None) -> Any:
    """The object ``ref`` ("path.py:attr" or "module:attr") names, whatever it is (the
    auth object of langgraph.json); GraphLoadError when it cannot be loaded, or, with
    ``where`` (the setting that names it), ConfigError "<where> cannot be loaded: ..."."""
    if where is None:
        return _resolve(ref)[0]
    try:
        return _resolve(ref)[0]
    except GraphLoadError as exc:
        from treadle.errors import ConfigError

        raise ConfigError(f"{where} cannot be loaded: {exc}") from exc


def _resolve(ref: str) -> tuple[Any, str]:
    target, attr = split_ref(ref)
    module = _load_file(target) if _is_path(target) else _import_module(target)
    if not hasattr(module, attr):
        found = _graph_like_names(module)
        hint = f" (found: {', '.join(found)})" if found else ""
        raise GraphLoadError(f"{target} has no attribute {attr!r}{hint}")
    return getattr(module, attr), f"{target}:{attr}"


def _factory(obj: Any, where: str) -> Factory | None:
    if not callable(obj) or isinstance(obj, type):
        return None
    return Factory.classify(obj, where)


# --- loading ----------------------------------------------------------------------------


def _load_file(target: str) -> ModuleType:
    path = Path(target).expanduser()
    if not path.exists():
        raise GraphLoadError(f"no such file: {target}")
    if path.is_dir():
        raise GraphLoadError(f"{target} is a directory, not a Python file")
    path = path.resolve()
    directory = str(path.parent)
    if directory not in sys.path:
        # Sibling imports (``from helpers import x``) resolve as when run as a script.
        sys.path.insert(0, directory)
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() or c == "_" else "_" for c in path.stem)
    name = f"_treadle_graph_{stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise GraphLoadError(f"cannot load {target} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs (dataclasses, typing and pickling look modules up by
    # name); ``__name__`` is not "__main__", so the file's main block does not run.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except KeyboardInterrupt:
        sys.modules.pop(name, None)
        raise
    except BaseException as exc:  # SystemExit from a module-level sys.exit() included
        sys.modules.pop(name, None)
        raise GraphLoadError(f"importing {target} failed: {_summary(exc)}") from exc
    _pickle_by_value(module)
    return module


def _import_module(target: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # ``treadle run pkg.mod:graph`` finds the project's modules like ``python -m`` does.
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (target == missing or target.startswith(missing + ".")):
            raise GraphLoadError(f"no module named {target!r}") from exc
        raise GraphLoadError(f"importing {target} failed: {_summary(exc)}") from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise GraphLoadError(f"importing {target} failed: {_summary(exc)}") from exc


def _pickle_by_value(module: ModuleType) -> None:
    """Let process-pool nodes defined in a file-loaded module reach worker processes.

    The module's name is ours, not importable elsewhere, so its functions travel by
    value (cloudpickle) instead of as an import reference.
    """
    try:
        import cloudpickle

        cloudpickle.register_pickle_by_value(module)
    except Exception:  # noqa: BLE001 - an older cloudpickle: process nodes pickle by reference
        pass


# --- recognising graphs ---------------------------------------------------------------------


def as_graph(obj: Any) -> StateGraph[Any, Any, Any, Any] | Pregel[Any, Any, Any, Any] | None:
    from treadle.runtime import TreadleGraph

    if isinstance(obj, TreadleGraph):  # a Pregel too: unwrapped, it is compiled again
        return _unwrap(obj)
    if isinstance(obj, (StateGraph, Pregel)):
        return obj
    return None


def _unwrap(graph: Pregel[Any, Any, Any, Any]) -> Pregel[Any, Any, Any, Any]:
    """The compiled graph under a TreadleGraph, with its NodeProxy wrappers removed.

    ``treadle.compile`` wraps every node again; wrapping twice would take two
    concurrency slots per task and count each failure twice in the breaker. Each
    node's pool and timeout are kept in its ``{"treadle": {...}}`` metadata.
    """
    from treadle.runtime.pools import NodeProxy

    nodes = {}
    for name, node in graph.nodes.items():
        for sub in node.subgraphs or ():
            if isinstance(sub, Pregel):
                inner = _unwrap(sub)
                sub.nodes = inner.nodes
        proxy = node.bound
        if isinstance(proxy, NodeProxy):
            # Options given as treadle.compile(nodes=...) travel on as node metadata.
            options = {"pool": proxy.options.pool, "timeout": proxy.options.timeout,
                       "placement": proxy.options.placement}
            metadata = {**(node.metadata or {}), "treadle": options}
            node = node.copy({"bound": proxy.bound, "metadata": metadata})
        nodes[name] = node
    return graph.copy({"nodes": nodes})


def _graph_like_names(module: ModuleType, limit: int = 10) -> list[str]:
    """Names in ``module`` that could go after the ``:``: its graphs, else its functions."""
    from treadle.runtime import TreadleGraph

    public = [(k, v) for k, v in vars(module).items() if not k.startswith("_")]
    graphs = [k for k, v in public if isinstance(v, (StateGraph, Pregel, TreadleGraph))]
    if graphs:
        return graphs[:limit]
    functions = [
        k for k, v in public
        if inspect.isfunction(v) and getattr(v, "__module__", None) == module.__name__
    ]
    return functions[:limit]


def _a(obj: Any) -> str:
    if isinstance(obj, type):
        return f"a class ({obj.__name__})"
    name = type(obj).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _summary(exc: BaseException) -> str:
    """``ValueError: message`` on one line (first line of the message)."""
    text = str(exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if isinstance(exc, SyntaxError) and exc.lineno:
        first = f"{exc.msg} ({Path(exc.filename or '?').name}, line {exc.lineno})"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
