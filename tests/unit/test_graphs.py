"""Unit tests for treadle.graphs.refs.load_graph: every REF form, every error message."""

from __future__ import annotations

import pickle
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from langgraph.graph.state import StateGraph
from langgraph.pregel import Pregel

import treadle
from treadle.errors import GraphLoadError
from treadle.graphs.refs import load_graph, split_ref
from treadle.runtime.pools import NodeProxy

GRAPH_SRC = '''
import operator
from typing import Annotated, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    steps: Annotated[list[str], operator.add]


def one(state):
    return {"steps": ["one"]}


def two(state):
    return {"steps": ["two"]}


builder = StateGraph(State)
builder.add_node("one", one)
builder.add_node("two", two)
builder.add_edge(START, "one")
builder.add_edge("one", "two")
builder.add_edge("two", END)
'''


def _write(directory: Path, name: str, body: str = "", *, graph: bool = True) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((GRAPH_SRC if graph else "") + textwrap.dedent(body), encoding="utf-8")
    return path


def _err(ref: str) -> GraphLoadError:
    with pytest.raises(GraphLoadError) as info:
        load_graph(ref)
    message = str(info.value)
    assert "\n" not in message, message
    return info.value


def _steps(graph: StateGraph[Any, Any, Any, Any] | Pregel[Any, Any, Any, Any]) -> list[str]:
    compiled = graph.compile() if isinstance(graph, StateGraph) else graph
    steps: list[str] = compiled.invoke({"steps": []})["steps"]
    return steps


def _func(graph: StateGraph[Any, Any, Any, Any] | Pregel[Any, Any, Any, Any], node: str) -> Any:
    """The function of a builder's node (LangGraph keeps it as a RunnableCallable's ``func``)."""
    assert isinstance(graph, StateGraph)
    runnable: Any = graph.nodes[node].runnable
    return runnable.func


@pytest.fixture()
def pysrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory for graph files; sys.path changes made by load_graph are undone."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


# --- REF forms -------------------------------------------------------------------------------


def test_file_ref_to_builder(pysrc: Path) -> None:
    path = _write(pysrc, "g.py")
    graph = load_graph(f"{path}:builder")
    assert isinstance(graph, StateGraph)
    assert _steps(graph) == ["one", "two"]


def test_file_ref_to_compiled_graph(pysrc: Path) -> None:
    path = _write(pysrc, "g.py", "graph = builder.compile()\n")
    graph = load_graph(f"{path}:graph")
    assert isinstance(graph, Pregel)
    assert _steps(graph) == ["one", "two"]


def test_relative_file_ref(pysrc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(pysrc, "sub/rel_graph.py")
    monkeypatch.chdir(pysrc)
    assert isinstance(load_graph("sub/rel_graph.py:builder"), StateGraph)
    assert isinstance(load_graph("./sub/rel_graph.py:builder"), StateGraph)


def test_file_ref_sibling_import_and_no_main_block(pysrc: Path) -> None:
    _write(pysrc, "siblinghelper_x1.py", "VALUE = 'from sibling'\n", graph=False)
    marker = pysrc / "main-ran"
    path = _write(pysrc, "g.py", f"""
        from siblinghelper_x1 import VALUE

        if __name__ == "__main__":
            open({str(marker)!r}, "w").close()
            raise SystemExit(3)
    """)
    graph = load_graph(f"{path}:builder")
    assert isinstance(graph, StateGraph)
    assert not marker.exists()
    module = sys.modules[_func(graph, "one").__module__]
    assert module.VALUE == "from sibling"
    assert module.__name__ != "__main__"


def test_file_modules_get_unique_names(pysrc: Path) -> None:
    a = _write(pysrc, "a/graph.py")
    b = _write(pysrc, "b/graph.py")
    ga, gb = load_graph(f"{a}:builder"), load_graph(f"{b}:builder")
    mod_a = _func(ga, "one").__module__
    mod_b = _func(gb, "one").__module__
    assert mod_a != mod_b
    assert load_graph(f"{a}:builder") is ga  # loaded once per process


def test_file_module_functions_pickle_by_value(pysrc: Path) -> None:
    """Process-pool nodes from a file-loaded module must reach workers that cannot import it."""
    import cloudpickle

    path = _write(pysrc, "g.py")
    graph = load_graph(f"{path}:builder")
    func = _func(graph, "one")
    data = cloudpickle.dumps(func)
    name = func.__module__
    saved = sys.modules.pop(name)
    try:
        assert pickle.loads(data)({}) == {"steps": ["one"]}
    finally:
        sys.modules[name] = saved


def test_module_ref(pysrc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = f"ut_pkg_{uuid.uuid4().hex[:8]}"
    _write(pysrc, f"{pkg}/__init__.py", graph=False)
    _write(pysrc, f"{pkg}/agent.py", "graph = builder.compile()\n")
    monkeypatch.syspath_prepend(str(pysrc))
    assert isinstance(load_graph(f"{pkg}.agent:graph"), Pregel)
    assert isinstance(load_graph(f"{pkg}.agent:builder"), StateGraph)


def test_module_ref_is_found_from_the_working_directory(
    pysrc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = f"ut_cwd_{uuid.uuid4().hex[:8]}"
    _write(pysrc, f"{mod}.py")
    monkeypatch.chdir(pysrc)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    assert isinstance(load_graph(f"{mod}:builder"), StateGraph)


def test_zero_arg_factory(pysrc: Path) -> None:
    path = _write(pysrc, "g.py", """
        def make_graph():
            return builder.compile()
    """)
    assert isinstance(load_graph(f"{path}:make_graph"), Pregel)


def test_factory_taking_config(pysrc: Path) -> None:
    path = _write(pysrc, "g.py", """
        SEEN = []

        def make_graph(config):
            SEEN.append(config)
            return builder
    """)
    config = {"configurable": {"thread_id": "t-1"}}
    graph = load_graph(f"{path}:make_graph", config=config)
    assert isinstance(graph, StateGraph)
    module = sys.modules[_func(graph, "one").__module__]
    assert module.SEEN == [config]
    load_graph(f"{path}:make_graph")
    assert module.SEEN[-1] == {"configurable": {}}


def test_factory_with_optional_config_and_async_factory(pysrc: Path) -> None:
    path = _write(pysrc, "g.py", """
        def with_default(config=None):
            assert config is not None
            return builder

        async def make_async():
            return builder.compile()

        class Factory:
            def __call__(self):
                return builder

        factory_object = Factory()
    """)
    assert isinstance(load_graph(f"{path}:with_default"), StateGraph)
    assert isinstance(load_graph(f"{path}:make_async"), Pregel)
    assert isinstance(load_graph(f"{path}:factory_object"), StateGraph)


def test_treadle_graph_is_unwrapped(pysrc: Path) -> None:
    store = f"sqlite:///{pysrc / 'user.db'}"
    path = _write(pysrc, "g.py", f"""
        import treadle

        tg = treadle.compile(builder, store={store!r}, nodes={{"two": {{"timeout": 7}}}})

        def make_tg():
            return tg
    """)
    try:
        for attr in ("tg", "make_tg"):
            graph = load_graph(f"{path}:{attr}")
            assert isinstance(graph, Pregel)
            assert not any(isinstance(n.bound, NodeProxy) for n in graph.nodes.values())
        # compiled again by treadle, each node is wrapped exactly once
        again = treadle.compile(graph, store=f"sqlite:///{pysrc / 'cli.db'}")
        try:
            bound = again.graph.nodes["one"].bound
            assert isinstance(bound, NodeProxy) and not isinstance(bound.bound, NodeProxy)
            two = again.graph.nodes["two"].bound
            assert isinstance(two, NodeProxy) and two.options.timeout == 7  # options kept
            assert again.invoke({"steps": []}, {"thread_id": "t"})["steps"] == ["one", "two"]
        finally:
            again.close()
    finally:
        module = next(m for m in sys.modules.values()
                      if getattr(m, "__file__", None) == str(path.resolve()))
        module.tg.close()


def test_split_ref_uses_the_last_colon() -> None:
    assert split_ref("C:\\graphs\\g.py:graph") == ("C:\\graphs\\g.py", "graph")
    assert split_ref(" pkg.mod:graph ") == ("pkg.mod", "graph")


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ref", ["graph.py", "pkg.module", "", "g.py:", ":graph"])
def test_ref_without_attr_names_the_expected_form(ref: str) -> None:
    err = _err(ref)
    assert "path/to/file.py:attr or module.path:attr" in str(err)


def test_attr_that_is_not_a_name() -> None:
    assert "is not an attribute name" in str(_err("g.py:not-a-name"))


def test_missing_file(pysrc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(pysrc)
    assert str(_err("x.py:graph")) == "no such file: x.py"
    assert str(_err("some/dir/x.py:graph")) == "no such file: some/dir/x.py"


def test_directory_is_not_a_file(pysrc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (pysrc / "adir").mkdir()
    monkeypatch.chdir(pysrc)
    assert str(_err("adir/:graph")) == "adir/ is a directory, not a Python file"


def test_missing_module() -> None:
    assert str(_err("no_such_pkg_xyz.agent:graph")) == "no module named 'no_such_pkg_xyz.agent'"


def test_missing_attribute_lists_what_was_found(pysrc: Path) -> None:
    path = _write(pysrc, "x.py", "graph = builder.compile()\n")
    err = _err(f"{path}:graphh")
    assert str(err) == f"{path} has no attribute 'graphh' (found: builder, graph)"


def test_missing_attribute_lists_functions_when_no_graph(pysrc: Path) -> None:
    path = _write(pysrc, "x.py", "def make_graph():\n    return 1\n", graph=False)
    assert str(_err(f"{path}:graph")) == f"{path} has no attribute 'graph' (found: make_graph)"
    empty = _write(pysrc, "empty.py", "", graph=False)
    assert str(_err(f"{empty}:graph")) == f"{empty} has no attribute 'graph'"


def test_missing_attribute_in_module(pysrc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = f"ut_attr_{uuid.uuid4().hex[:8]}"
    _write(pysrc, f"{mod}.py")
    monkeypatch.syspath_prepend(str(pysrc))
    assert str(_err(f"{mod}:nope")) == f"{mod} has no attribute 'nope' (found: builder)"


def test_wrong_type(pysrc: Path) -> None:
    path = _write(pysrc, "x.py", "foo = 42\nname = 'a'\n")
    assert str(_err(f"{path}:foo")).startswith(f"{path}:foo is an int, not a LangGraph graph")
    assert str(_err(f"{path}:name")).startswith(f"{path}:name is a str, not a LangGraph graph")
    assert str(_err(f"{path}:State")).startswith(
        f"{path}:State is a class (State), not a LangGraph graph"
    )


def test_factory_returning_the_wrong_type(pysrc: Path) -> None:
    path = _write(pysrc, "x.py", "def make_graph():\n    return {'not': 'a graph'}\n")
    assert str(_err(f"{path}:make_graph")).startswith(
        f"{path}:make_graph() returned a dict, not a LangGraph graph"
    )


def test_factory_raising_is_chained(pysrc: Path) -> None:
    path = _write(pysrc, "x.py", """
        def make_graph():
            raise ValueError("missing setting\\nmore detail")
    """)
    err = _err(f"{path}:make_graph")
    assert str(err) == f"{path}:make_graph() raised ValueError: missing setting"
    assert isinstance(err.__cause__, ValueError)


def test_factory_needing_two_arguments(pysrc: Path) -> None:
    path = _write(pysrc, "x.py", "def make_graph(a, b):\n    return builder\n")
    assert str(_err(f"{path}:make_graph")) == (
        f"{path}:make_graph: a graph factory takes a config and/or a ServerRuntime, but b is "
        "neither (give it a default, or annotate the runtime parameter as ServerRuntime)")


def test_exception_while_importing_file_is_chained(pysrc: Path) -> None:
    path = _write(pysrc, "boom.py", "raise RuntimeError('kaput\\nsecond line')\n", graph=False)
    err = _err(f"{path}:graph")
    assert str(err) == f"importing {path} failed: RuntimeError: kaput"
    assert isinstance(err.__cause__, RuntimeError)
    # a failed import is not cached: fixing the file fixes the next load
    _write(pysrc, "boom.py")
    assert isinstance(load_graph(f"{path}:builder"), StateGraph)


def test_sys_exit_while_importing(pysrc: Path) -> None:
    path = _write(pysrc, "exits.py", "import sys\nsys.exit(4)\n", graph=False)
    assert str(_err(f"{path}:graph")) == f"importing {path} failed: SystemExit: 4"


def test_syntax_error_names_the_line(pysrc: Path) -> None:
    path = _write(pysrc, "bad.py", "x = 1\ndef broken(:\n", graph=False)
    err = _err(f"{path}:graph")
    assert str(err).startswith(f"importing {path} failed: SyntaxError: ")
    assert "bad.py, line 2" in str(err)


def test_missing_dependency_of_a_module_is_an_import_failure(
    pysrc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = f"ut_dep_{uuid.uuid4().hex[:8]}"
    _write(pysrc, f"{mod}.py", "import no_such_dependency_xyz\n", graph=False)
    monkeypatch.syspath_prepend(str(pysrc))
    err = _err(f"{mod}:graph")
    assert str(err) == (
        f"importing {mod} failed: ModuleNotFoundError: No module named 'no_such_dependency_xyz'"
    )
    path = _write(pysrc, "file_dep.py", "import no_such_dependency_xyz\n", graph=False)
    assert "No module named 'no_such_dependency_xyz'" in str(_err(f"{path}:graph"))


def test_graph_load_error_is_a_treadle_error() -> None:
    assert issubclass(GraphLoadError, treadle.TreadleError)
