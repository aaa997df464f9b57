"""Run the five seed demos through treadle, one after another, and summarise.

    python examples/seeds/run_all.py            # all five
    python examples/seeds/run_all.py 001 004    # only some (matched against file names)

Each seed runs in its own subprocess with a fresh temporary directory as its working
directory, so each gets its own store (./.treadle/treadle.db there) and TREADLE_STORE is
unset for it. The seed's stdout and stderr (treadle's retry warnings) are shown as they
come. Exit status is 0 only if every seed exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_SRC = HERE.parent.parent / "src"


def seeds(selected: list[str]) -> list[Path]:
    found = sorted(HERE.glob("seed_*.py"))
    if selected:
        found = [p for p in found if any(s in p.name for s in selected)]
    return found


def treadle_path() -> str | None:
    """The directory to put on the children's PYTHONPATH so they import treadle."""
    spec = importlib.util.find_spec("treadle")
    if spec is not None and spec.origin:
        return str(Path(spec.origin).resolve().parent.parent)
    if (REPO_SRC / "treadle" / "__init__.py").is_file():
        return str(REPO_SRC)  # running from a source checkout without `pip install -e .`
    return None


def child_env(path: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TREADLE_STORE", None)
    env["PYTHONUNBUFFERED"] = "1"  # keep stdout and stderr lines in the order they happen
    env["PYTHONIOENCODING"] = "utf-8"
    if path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH")) if p)
    return env


def out(text: str = "") -> None:
    sys.stdout.buffer.write((text + "\n").encode("utf-8", "replace"))
    sys.stdout.buffer.flush()


def run(seed: Path, env: dict[str, str], timeout: float) -> tuple[int | None, float]:
    """Run one seed, echoing its output indented; returns (exit code or None on timeout, s)."""
    with tempfile.TemporaryDirectory(prefix=f"treadle-{seed.stem}-") as cwd:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, str(seed)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.buffer.write(b"  | " + line)
                sys.stdout.buffer.flush()
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            timer.cancel()
        return (None if timed_out.is_set() else code), time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="run only seeds whose file name contains one of these")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per seed (default 300)")
    args = parser.parse_args(argv)

    todo = seeds(args.only)
    if not todo:
        out(f"no seed matches {args.only!r} in {HERE}")
        return 2
    path = treadle_path()
    if path is None:
        out("treadle is not importable: run `pip install -e .` in the repo (or set PYTHONPATH=src)")
        return 2
    env = child_env(path)

    results: list[tuple[str, int | None, float]] = []
    for i, seed in enumerate(todo, 1):
        out(f"=== [{i}/{len(todo)}] {seed.name} " + "=" * max(3, 66 - len(seed.name)))
        code, seconds = run(seed, env, args.timeout)
        results.append((seed.name, code, seconds))
        status = "ok" if code == 0 else ("timed out" if code is None else f"FAILED (exit {code})")
        out(f"--- {seed.name}: {status} in {seconds:.1f}s")
        out()

    out("=== summary " + "=" * 68)
    width = max(len(name) for name, _, _ in results)
    for name, code, seconds in results:
        status = "ok" if code == 0 else ("TIMEOUT" if code is None else f"FAIL (exit {code})")
        out(f"  {status:<14} {name:<{width}}  {seconds:6.1f}s")
    failed = sum(1 for _, code, _ in results if code != 0)
    total = sum(s for _, _, s in results)
    out(f"{len(results) - failed}/{len(results)} seeds ok in {total:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
