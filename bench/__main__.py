"""Run the whole benchmark suite: ``python -m bench [--quick] [name ...]``.

Each benchmark runs in its own interpreter (fresh state, and a hung system
cannot stall the rest); extra flags are passed through. Exit status is non-zero
only if a benchmark crashed or timed out; missed targets are reported, not fatal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

BENCHES = ["chain", "concurrent", "fanout", "cluster", "server", "scaling", "storage", "capacity"]
# seconds per benchmark; each is designed to finish well under 60 s (cluster: ~100 s,
# it starts worker processes and waits out a lease expiry three times; server: ~130 s, it
# starts four HTTP servers, and on its first run installs langgraph dev into .bench/)
TIMEOUT = 180
# the server bench may first create the langgraph dev virtualenv (pip, about a minute);
# capacity: three servers, each carrying 2 x 1,000 runs at once (~1 minute each)
TIMEOUTS = {"server": 420, "capacity": 900, "storage": 420}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        print(f"benchmarks: {', '.join(BENCHES)}; flags: --quick --pg-url URL --skip-treadle --no-json")
        return 0
    names = [a for a in argv if not a.startswith("-") and a in BENCHES]
    flags = [a for a in argv if a not in names]
    unknown = [a for a in flags if not a.startswith("-") and not _is_flag_value(flags, a)]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.join(root, "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, root, env.get("PYTHONPATH")) if p)

    status: list[tuple[str, str, float]] = []
    for name in names or BENCHES:
        print(f"=== bench.{name} {' '.join(flags)}".rstrip(), flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run([sys.executable, "-m", f"bench.{name}", *flags], cwd=root, env=env, timeout=TIMEOUTS.get(name, TIMEOUT)).returncode
            outcome = "ok" if rc == 0 else f"exit {rc}"
        except subprocess.TimeoutExpired:
            outcome = f"timeout after {TIMEOUTS.get(name, TIMEOUT)} s"
        status.append((name, outcome, time.perf_counter() - t0))
        print(flush=True)
    print("=== summary")
    for name, outcome, secs in status:
        print(f"  bench.{name:<11} {outcome:<22} {secs:6.1f} s")
    return 0 if all(o == "ok" for _, o, _ in status) else 1


def _is_flag_value(flags: list[str], a: str) -> bool:
    i = flags.index(a)
    return i > 0 and flags[i - 1] in ("--pg-url",)


if __name__ == "__main__":
    raise SystemExit(main())
