"""LangChain's sdk-py integration suite against ``treadle dev`` and ``langgraph dev``, side by side.

The suite lives in the langgraph repository (``libs/sdk-py/tests/integration``, its
graphs and ``langgraph.json`` in ``libs/sdk-py/integration``); it finds its server
through ``LANGGRAPH_INTEGRATION_URL``. This script copies the suite's graph directory
to a scratch directory, starts both servers on it (free ports), runs the suite once
against each with the checkout's own ``langgraph_sdk`` first on ``PYTHONPATH`` (and
``bench/_sdk_suite_plugin.py``, which points the modules that hard-code
``http://localhost:2024`` at the server under test), and prints each test's outcome
on each server and the counts::

    PYTHONPATH=src python -m bench.sdk_suite --suite PATH/TO/langgraph/libs/sdk-py \\
        --python /path/to/venv/bin/python

``--python`` runs pytest and ``treadle dev``; it needs the suite's graph and test
dependencies (``langchain``, ``deepagents``, ``pytest``, ``pytest-asyncio``,
``pytest-mock``, ``pytest-timeout``) and treadle's own. ``langgraph dev`` runs from
``--langgraph-venv`` (default: the server benchmark's venv, see bench/_servers.py),
which needs the graph dependencies as well. Neither venv is modified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from bench._servers import ROOT, ServerProc, ServerUnavailable, free_port, langgraph_dev_venv, offline_env

__all__ = ["main"]

OUTCOMES = ("passed", "failed", "error", "skipped")


def _suite_root(path: Path) -> Path:
    """``libs/sdk-py`` whether given it, its ``tests`` or its ``tests/integration``."""
    path = path.expanduser().resolve()
    for candidate in (path, path.parent, path.parent.parent):
        if (candidate / "tests" / "integration").is_dir() and (candidate / "integration" / "langgraph.json").is_file():
            return candidate
    raise SystemExit(f"{path}: no tests/integration and integration/langgraph.json here (pass libs/sdk-py)")


def _run_suite(python: str, suite: Path, url: str, junit: Path, timeout: int, log: Path) -> dict[str, str]:
    """pytest on the suite against ``url``; {test id: outcome}."""
    env = offline_env()
    env["LANGGRAPH_INTEGRATION_URL"] = url
    # the checkout's langgraph_sdk first (not the installed one), then the URL plugin
    env["PYTHONPATH"] = os.pathsep.join([str(suite), str(ROOT)])
    argv = [python, "-m", "pytest", "tests/integration", "-m", "integration", "-o", "addopts=",
            "-p", "no:cacheprovider", "-p", "bench._sdk_suite_plugin", "-q",
            f"--timeout={timeout}", f"--junitxml={junit}"]
    with open(log, "wb") as out:
        subprocess.run(argv, cwd=suite, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if not junit.exists():
        raise SystemExit(f"pytest wrote no report; see {log}")
    results: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "failure" else child.tag
        results[name] = outcome
    return results


def _table(results: dict[str, dict[str, str]]) -> str:
    labels = list(results)
    tests = sorted({t for r in results.values() for t in r})
    width = max([len(t) for t in tests] + [4])
    lines = [f"{'test':<{width}}  " + "  ".join(f"{label:<14}" for label in labels)]
    for test in tests:
        cells = [results[label].get(test, "-") for label in labels]
        mark = "" if len(set(cells)) == 1 else "   <- differs"
        lines.append(f"{test:<{width}}  " + "  ".join(f"{c:<14}" for c in cells) + mark)
    lines.append("")
    for label in labels:
        counts = {o: sum(1 for v in results[label].values() if v == o) for o in OUTCOMES}
        lines.append(f"{label}: {counts['passed']} passed of {len(results[label])} "
                     f"({counts['failed']} failed, {counts['error']} errors, {counts['skipped']} skipped)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True, type=Path, help="the langgraph checkout's libs/sdk-py")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter for pytest and treadle dev (default: this one)")
    parser.add_argument("--langgraph-venv", type=Path, default=None,
                        help="virtualenv with langgraph-cli[inmem] (default: the server benchmark's)")
    parser.add_argument("--only", choices=("treadle", "langgraph"), default=None, help="one server only")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test (pytest-timeout)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, reports)")
    args = parser.parse_args(argv)
    suite = _suite_root(args.suite)
    scratch = Path(tempfile.mkdtemp(prefix="treadle-sdk-suite-"))
    graphs = scratch / "integration"
    shutil.copytree(suite / "integration", graphs)
    config = str(graphs / "langgraph.json")
    servers: list[ServerProc] = []
    try:
        if args.only != "langgraph":
            env = offline_env()
            env["PYTHONPATH"] = str(ROOT / "src")
            port = free_port()
            servers.append(ServerProc("treadle dev", [
                args.python, "-m", "treadle", "dev", "--config", config, "--port", str(port),
                "--store", f"sqlite:///{scratch / 'treadle.db'}"], port, cwd=graphs, env=env, log_dir=scratch))
        if args.only != "treadle":
            venv = args.langgraph_venv or langgraph_dev_venv()
            port = free_port()
            servers.append(ServerProc("langgraph dev", [
                str(venv / "bin" / "langgraph"), "dev", "--config", config, "--port", str(port),
                "--no-browser", "--no-reload"], port, cwd=graphs, env=offline_env(), log_dir=scratch))
        results: dict[str, dict[str, str]] = {}
        for server in servers:
            try:
                server.wait_ready(timeout=120)
            except ServerUnavailable as exc:
                print(server.describe_failure(exc), file=sys.stderr)
                return 1
            slug = server.label.replace(" ", "-")
            print(f"running the suite against {server.label} at {server.url} ...", file=sys.stderr, flush=True)
            results[server.label] = _run_suite(args.python, suite, server.url, scratch / f"{slug}.xml",
                                               args.timeout, scratch / f"{slug}-pytest.log")
        print(_table(results))
        print(f"\nlogs and reports: {scratch}" if args.keep else "")
        return 0
    finally:
        for server in servers:
            server.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
