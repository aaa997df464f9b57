"""The public API changes only on purpose: update this list in the same commit."""

import treadle

EXPECTED = [
    "CircuitOpenError",
    "ConfigError",
    "FencedWriteError",
    "GraphLoadError",
    "InputError",
    "NodeError",
    "NodeTimeoutError",
    "SchemaError",
    "Settings",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "TaskCrashedError",
    "TreadleError",
    "TreadleGraph",
    "TreadleSaver",
    "TreadleStore",
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
