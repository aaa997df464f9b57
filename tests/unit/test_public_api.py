"""The public API changes only on purpose: update this list in the same commit."""

import ast
from pathlib import Path

import treadle
from treadle import errors

EXPECTED = [
    "AccessFilterError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "EncryptionError",
    "FencedWriteError",
    "GraphLoadError",
    "IdempotencyKeyError",
    "InputError",
    "MigrationsPendingError",
    "NodeError",
    "NodeTimeoutError",
    "NotFoundError",
    "PriorityError",
    "QueueTimeoutError",
    "RefusedConfigError",
    "RemoteNodeError",
    "RunFailedError",
    "RunSpecVersionError",
    "SandboxLimitError",
    "SandboxUnavailableError",
    "SchemaError",
    "Settings",
    "Store",
    "StoreDataError",
    "StoreError",
    "StoreUnavailableError",
    "TaskCrashedError",
    "ThreadBusyError",
    "TreadleError",
    "TreadleGraph",
    "TreadleSaver",
    "TreadleStore",
    "UsageError",
    "WaitTimeoutError",
    "WebhookRefusedError",
    "__version__",
    "compile",
    "idempotency_key",
    "is_transient",
    "open_store",
]


def test_all_is_pinned() -> None:
    assert sorted(treadle.__all__) == EXPECTED


def test_every_name_resolves() -> None:
    for name in treadle.__all__:
        assert getattr(treadle, name) is not None


def test_one_error_root() -> None:
    errors = [getattr(treadle, n) for n in treadle.__all__ if n.endswith("Error")]
    assert all(issubclass(e, treadle.TreadleError) for e in errors)


def test_every_error_class_is_exported_at_the_top() -> None:
    defined = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, Exception)
               and v.__module__ == "treadle.errors"}
    assert defined == set(errors.__all__)
    assert defined <= set(treadle.__all__)


# What may be raised that is not a TreadleError, and why.
_NOT_TREADLE = {
    "HTTPException",  # routes only (tests/unit/test_error_status.py keeps it there)
    "ValueError",  # pydantic validators (their 422s) and malformed query files (a bug)
    "BadParameter", "Exit",  # typer, in the CLI
    "InvalidNamespaceError",  # LangGraph's BaseStore contract, in the memory adapter
    "KeyError", "TypeError", "AssertionError", "NotImplementedError",  # programming errors
    "OSError",  # the worker endpoint could not listen (the operating system's error)
    "AttributeError",  # __getattr__'s protocol (server/encryption_context.py's user view)
    "McpError",  # the mcp server's JSON-RPC error answer, in server/mcp.py (as HTTPException)
}
_SRC = Path(treadle.__file__).parent


def test_what_treadle_raises_is_a_treadle_error_or_a_listed_builtin() -> None:
    ours = set(errors.__all__) | {"CommandError"}
    strays: list[str] = []
    for path in _SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.id if isinstance(exc, ast.Name) else exc.attr if isinstance(exc, ast.Attribute) else ""
            if name[:1].isupper() and name not in ours and name not in _NOT_TREADLE:
                strays.append(f"{path.relative_to(_SRC)}:{node.lineno} raises {name}")
    assert strays == []


def test_the_error_tree_drawn_in_errors_py_names_every_error_under_its_parent() -> None:
    drawn: dict[str, str] = {}  # error -> parent, read off the indentation of the drawing
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        found = next((w for w in line.split() if w in errors.__all__), None)
        if found is None or ("──" not in line and found != "TreadleError"):
            continue
        depth = line.index(found)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[found] = stack[-1][1] if stack else ""
        stack.append((depth, found))
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert name in drawn, f"{name} is not drawn in errors.py's docstring"
        if name != "TreadleError":
            parents = {b.__name__ for b in cls.__bases__}
            assert drawn[name] in parents, f"{name} is drawn under {drawn[name]}, not a parent"
