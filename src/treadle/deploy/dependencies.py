"""The image's install step (deploy/Dockerfile): pip-install a langgraph.json's dependencies.

    python -m treadle.deploy.dependencies path/to/langgraph.json [--dry-run] [-- PIP ARGS...]

Each entry of ``dependencies`` is a local path (relative to the langgraph.json, as ``"."``
or ``"./lib"``) or a pip requirement (``"langchain-openai>=0.3"``). A local directory with
a ``pyproject.toml`` or ``setup.py`` (or a local wheel) is installed like a requirement; a
plain directory of modules is not installed: treadle puts it on ``sys.path`` when it reads
the langgraph.json, so it must lie inside the graphs' directory, which the image copies to
/app. Run it locally the same way to check what the image build will install.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from treadle import langgraph_json as lgjson
from treadle.errors import ConfigError

__all__ = ["main", "pip_arguments"]


def pip_arguments(langgraph_json: Path) -> list[str]:
    """What ``pip install`` gets for the dependencies of ``langgraph_json`` (maybe nothing)."""
    if not langgraph_json.is_file():
        raise ConfigError(f"{langgraph_json} not found: the graphs' directory (GRAPHS_DIR) "
                          "must hold a langgraph.json")
    deps = lgjson.dependencies(lgjson.read(langgraph_json), str(langgraph_json))
    base = langgraph_json.resolve().parent
    args: list[str] = []
    for dep in deps:
        if not dep.startswith((".", "/")):
            args.append(dep)  # a requirement: pip resolves it
            continue
        path = (base / dep).resolve()
        if path.is_file() and path.suffix == ".whl":
            args.append(str(path))
        elif path.is_dir() and ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file()):
            args.append(str(path))
        elif path.is_dir():
            if not path.is_relative_to(base):
                raise ConfigError(f"{langgraph_json}: dependency {dep} lies outside the graphs' "
                                  "directory and is no package (no pyproject.toml or setup.py): "
                                  "move it inside, or package it")
        else:
            raise ConfigError(f"{langgraph_json}: dependency {dep} does not exist ({path})")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    own, extra = argv[:cut], argv[cut + 1:]
    dry_run = "--dry-run" in own
    paths = [a for a in own if a != "--dry-run"]
    if len(paths) != 1 or paths[0].startswith("-"):
        sys.stderr.write("usage: python -m treadle.deploy.dependencies LANGGRAPH_JSON "
                         "[--dry-run] [-- PIP ARGS...]\n")
        return 2
    try:
        args = pip_arguments(Path(paths[0]))
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    command = [sys.executable, "-m", "pip", "install", *extra, *args]
    if not args:
        sys.stdout.write("nothing to install\n")
        return 0
    sys.stdout.write(" ".join(command) + "\n")
    sys.stdout.flush()
    if dry_run:
        return 0
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
