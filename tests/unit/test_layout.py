"""The package layout: a module's name says which one it is."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import treadle

_SRC = Path(treadle.__file__).parent
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

def test_no_two_modules_share_a_name() -> None:
    where: defaultdict[str, list[str]] = defaultdict(list)
    for path in sorted(_SRC.rglob("*.py")):
        if path.name != "__init__.py":
            where[path.stem].append(str(path.relative_to(_SRC)))
    repeated = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not repeated, f"modules sharing a name (rename one of each): {repeated}"


def test_the_layers_contract_holds() -> None:
    """``lint-imports``: each layer of ``[tool.importlinter]`` in pyproject.toml imports
    only the layers below it (cli over server over cluster ... over errors)."""
    # In a child process: import-linter's console set-up must not touch this one's logging.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_SRC.parent), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())", "--config", str(_PYPROJECT), "--no-cache"],
        cwd=_PYPROJECT.parent, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
