"""Layers import downwards only: the cluster never imports the server or the CLI, and the
runtime never imports the cluster (it reaches it through ``treadle.runtime.distributed``).
Checked on the source (every import, including those inside functions)."""

import ast
from pathlib import Path

import treadle

SRC = Path(treadle.__file__).parent


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _offending(files: list[Path], banned: tuple[str, ...]) -> list[str]:
    return [f"{f.relative_to(SRC)}: {name}" for f in files for name in sorted(_imports(f))
            if any(name == b or name.startswith(b + ".") for b in banned)]


def test_cluster_imports_neither_server_nor_cli() -> None:
    files = sorted((SRC / "cluster").rglob("*.py"))
    assert files
    assert _offending(files, ("treadle.server", "treadle.cli")) == []


def test_runtime_does_not_import_the_cluster() -> None:
    files = sorted((SRC / "runtime").rglob("*.py"))
    assert files
    assert _offending(files, ("treadle.cluster", "treadle.server", "treadle.cli")) == []
