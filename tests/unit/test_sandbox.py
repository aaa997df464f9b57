"""Unit tests for treadle.runtime.sandbox, with real processes: each limit fails its own
attempt, with an error naming it, while the pool and its other tasks carry on."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from treadle.config import Settings
from treadle.errors import (
    ConfigError,
    NodeTimeoutError,
    SandboxLimitError,
    SandboxUnavailableError,
)
from treadle.runtime.pools import NodeOptions
from treadle.runtime.process_pool import ProcessPool
from treadle.runtime.sandbox import Sandbox, submit

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

cloudpickle.register_pickle_by_value(sys.modules[__name__])

SRC = str(Path(__file__).resolve().parents[2] / "src")


# node bodies (run in the pool's processes) -------------------------------------------


def _allocate_2gb(state: Any) -> int:
    block = bytearray(2 * 1024**3)
    return len(block)


def _spin(state: Any) -> None:
    while True:
        pass


def _sleep(state: Any) -> None:
    time.sleep(3600)


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _status(state: Any) -> dict[str, str]:
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: fields[k].strip() for k in ("NoNewPrivs", "Threads")} | {"pid": str(os.getpid())}


def _limits(state: Any) -> list[int]:
    return [resource.getrlimit(r)[0]
            for r in (resource.RLIMIT_DATA, resource.RLIMIT_AS, resource.RLIMIT_CPU)]


def _connect(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        return "connected"


# helpers ----------------------------------------------------------------------------


@pytest.fixture
def pool() -> Iterator[ProcessPool]:
    with ProcessPool(2) as p:
        yield p


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def run(pool: ProcessPool, node: str, box: Sandbox, fn: Any, state: Any = None, *,
        mode: str = "required", timeout: float | None = None) -> Future[Any]:
    return submit(pool, node, box, mode, timeout, fn, state, None, {})


def limit_error(future: Future[Any]) -> SandboxLimitError:
    with pytest.raises(SandboxLimitError) as info:
        future.result(timeout=120)
    return info.value


def namespaces_allowed(pool: ProcessPool) -> bool:
    """Whether this kernel gives a sandboxed process a network namespace."""
    try:
        run(pool, "probe", Sandbox(network=False), _status).result(timeout=60)
    except SandboxUnavailableError:
        return False
    return True


# limits ----------------------------------------------------------------------------------


def test_a_node_allocating_2gb_fails_alone_under_a_256mb_limit(pool: ProcessPool) -> None:
    plain = pool.submit(_pid_after, 0.5)  # a shared worker, busy meanwhile
    hog = run(pool, "hog", Sandbox(memory_mb=256), _allocate_2gb)
    sibling = run(pool, "sibling", Sandbox(memory_mb=256), _status)
    error = limit_error(hog)
    assert error.limit == "memory"
    assert str(error) == "node 'hog' exceeded its memory limit of 256 MB"
    assert sibling.result(timeout=60)["NoNewPrivs"] == "1"
    worker = plain.result(timeout=60)
    # The shared worker lives on, without the sandbox's limits.
    assert pool.run(_pid_after, 0) == worker
    assert pool.run(_limits, None) == [resource.RLIM_INFINITY] * 3
    assert pool.run(_status, None)["NoNewPrivs"] == "0"


def test_the_memory_limit_lets_a_small_node_through(pool: ProcessPool) -> None:
    assert run(pool, "small", Sandbox(memory_mb=512), _limits).result(timeout=60)[0] == 512 * 1024**2


def test_a_limit_below_the_interpreter_itself_is_named(pool: ProcessPool) -> None:
    error = limit_error(run(pool, "tiny", Sandbox(memory_mb=1), _status))
    assert error.limit == "memory" and "raise memory_mb" in str(error)


def test_a_node_spinning_forever_fails_on_cpu_seconds(pool: ProcessPool) -> None:
    other = pool.submit(_pid_after, 0)
    error = limit_error(run(pool, "spin", Sandbox(cpu_seconds=1, wall_seconds=120), _spin))
    assert error.limit == "cpu"
    assert str(error).startswith("node 'spin' exceeded its CPU limit of 1 s")
    assert other.result(timeout=60) == pool.run(_pid_after, 0)


def test_a_node_sleeping_forever_fails_on_wall_time(pool: ProcessPool) -> None:
    error = limit_error(run(pool, "sleepy", Sandbox(wall_seconds=0.5, cpu_seconds=60), _sleep))
    assert error.limit == "wall"
    assert str(error) == ("node 'sleepy' exceeded its wall-time limit of 0.5 s; its process "
                          "was killed")
    assert isinstance(pool.run(_pid_after, 0), int)


def test_a_shorter_node_timeout_stays_a_timeout(pool: ProcessPool) -> None:
    with pytest.raises(NodeTimeoutError, match="node 'sleepy' exceeded its timeout of 0.5s"):
        run(pool, "sleepy", Sandbox(wall_seconds=60), _sleep, timeout=0.5).result(timeout=60)


def test_each_sandboxed_call_gets_a_fresh_single_threaded_process(pool: ProcessPool) -> None:
    shared = pool.run(_status, None)
    first = run(pool, "a", Sandbox(), _status).result(timeout=60)
    second = run(pool, "a", Sandbox(), _status).result(timeout=60)
    assert first["NoNewPrivs"] == second["NoNewPrivs"] == "1"
    assert first["Threads"] == "1"  # no watchdog thread: unshare(CLONE_NEWUSER) needs that
    assert len({first["pid"], second["pid"], shared["pid"]}) == 3
    assert pool.run(_status, None)["pid"] == shared["pid"]  # the shared worker was reused


# network -------------------------------------------------------------------------------


def test_a_node_without_network_cannot_reach_a_local_listener(
    pool: ProcessPool, listener: int
) -> None:
    assert run(pool, "online", Sandbox(), _connect, listener).result(timeout=60) == "connected"
    offline = run(pool, "offline", Sandbox(network=False), _connect, listener)
    if namespaces_allowed(pool):
        with pytest.raises(OSError, match="Network is unreachable"):
            offline.result(timeout=60)
    else:  # the documented fail-closed default
        with pytest.raises(SandboxUnavailableError, match="TREADLE_SANDBOX_NETWORK=best-effort"):
            offline.result(timeout=60)


# The kernel refusing namespaces, for real: a seccomp filter (what Docker's default
# profile does) makes unshare(2) fail with EPERM in a child interpreter and its pool.
_REFUSED = textwrap.dedent("""
    import ctypes, json, logging, platform, socket, sys
    from treadle.errors import SandboxUnavailableError
    from treadle.runtime.process_pool import ProcessPool
    from treadle.runtime.sandbox import Sandbox, submit

    def deny_unshare():
        nr = {"x86_64": 272, "aarch64": 97}[platform.machine()]
        class Filter(ctypes.Structure):
            _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte),
                        ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]
        class Program(ctypes.Structure):
            _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Filter))]
        code = (Filter * 4)(Filter(0x20, 0, 0, 0), Filter(0x15, 0, 1, nr),
                            Filter(0x06, 0, 0, 0x00050000 | 1), Filter(0x06, 0, 0, 0x7fff0000))
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.prctl(38, 1, 0, 0, 0) == 0
        assert libc.prctl(22, 2, ctypes.byref(Program(4, code)), 0, 0) == 0

    def connect(port):
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            return "connected"

    if __name__ == "__main__":
        logging.basicConfig(stream=sys.stdout, format="LOG %(message)s")
        deny_unshare()
        port, out = int(sys.argv[1]), {}
        with ProcessPool(1) as pool:
            for mode in ("required", "best-effort"):
                try:
                    out[mode] = submit(pool, "fetch", Sandbox(network=False), mode, None,
                                       connect, port, None, {}).result(timeout=60)
                except SandboxUnavailableError as exc:
                    out[mode] = "refused: " + str(exc)
        print("RESULT " + json.dumps(out))
""")


def test_when_the_kernel_refuses_a_namespace_required_fails_and_best_effort_warns(
    tmp_path: Path, listener: int
) -> None:
    script = tmp_path / "refused.py"
    script.write_text(_REFUSED)
    proc = subprocess.run([sys.executable, str(script), str(listener)], capture_output=True,
                          text=True, timeout=240, env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    out = json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])
    assert out["required"].startswith(
        "refused: node 'fetch' must run without network, but the kernel refused a network "
        "namespace (unshare(CLONE_NEWNET) failed: Operation not permitted")
    assert out["best-effort"] == "connected"
    assert [line for line in lines if line.startswith("LOG ")] == [
        "LOG node 'fetch' sandbox: ran WITH network: the kernel refused a network namespace "
        "(unshare(CLONE_NEWNET) failed: Operation not permitted (errno 1); "
        "unshare(CLONE_NEWUSER|CLONE_NEWNET) failed: Operation not permitted (errno 1)) and "
        "TREADLE_SANDBOX_NETWORK=best-effort"]


# options ---------------------------------------------------------------------------------


def test_sandbox_options_are_checked() -> None:
    opts = NodeOptions.parse("n", {"sandbox": {"memory_mb": 512, "cpu_seconds": 2.5,
                                               "wall_seconds": 10, "network": False}}, None)
    assert opts.pool == "process"  # "auto" with a sandbox means the process pool
    assert opts.sandbox == Sandbox(memory_mb=512, cpu_seconds=3, wall_seconds=10.0,
                                   network=False)
    bad: list[tuple[dict[str, Any], str]] = [
        ({"sandbox": {"memory": 5}}, r"unknown sandbox option\(s\) \['memory'\]"),
        ({"sandbox": {"memory_mb": 0}}, "sandbox memory_mb must be a positive number"),
        ({"sandbox": {"cpu_seconds": True}}, "sandbox cpu_seconds must be a positive number"),
        ({"sandbox": {"network": "off"}}, "sandbox network must be true or false"),
        ({"sandbox": [512]}, "sandbox must be a dict"),
        ({"pool": "thread", "sandbox": {}}, "a sandbox runs on the process pool"),
    ]
    for raw, message in bad:
        with pytest.raises(ConfigError, match=message):
            NodeOptions.parse("n", raw, None)


def test_the_network_setting_takes_two_values() -> None:
    assert Settings().sandbox_network == "required"
    assert Settings(sandbox_network="best-effort").sandbox_network == "best-effort"
    with pytest.raises(ValueError, match="sandbox_network"):
        Settings(sandbox_network="maybe")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_sandboxed_process_dies_with_the_pools_parent(tmp_path: Path) -> None:
    script = tmp_path / "dies.py"
    script.write_text(textwrap.dedent("""
        import os, sys, time
        from treadle.runtime.process_pool import ProcessPool
        from treadle.runtime.sandbox import Sandbox, submit

        def hang(state):
            print(os.getpid(), flush=True)
            time.sleep(120)

        if __name__ == "__main__":
            pool = ProcessPool(1)
            submit(pool, "hang", Sandbox(network=False), "best-effort", None, hang, None,
                   None, {})
            time.sleep(120)
    """))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": SRC})
    assert parent.stdout is not None
    try:
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)  # no watchdog thread: the kernel's parent-death signal
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


_UNPRIVILEGED = textwrap.dedent("""
    import json, os, socket, sys
    from treadle.errors import SandboxUnavailableError
    from treadle.runtime.process_pool import ProcessPool
    from treadle.runtime.sandbox import Sandbox, submit

    def probe(port):
        out = {"uid_map": open("/proc/self/uid_map").read().split(), "uid": os.getuid()}
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            out["net"] = "connected"
        except OSError as exc:
            out["net"] = exc.strerror
        return out

    if __name__ == "__main__":
        with ProcessPool(1) as pool:
            pool.run(os.getpid)  # a regular worker, with its watchdog thread, runs too
            try:
                out = submit(pool, "n", Sandbox(network=False, memory_mb=512), "required",
                             None, probe, int(sys.argv[1]), None, {}).result(timeout=60)
            except SandboxUnavailableError as exc:
                out = {"refused": str(exc)}
        print("RESULT " + json.dumps(out))
""")


def test_without_cap_sys_admin_an_unprivileged_user_namespace_isolates(
    tmp_path: Path, listener: int
) -> None:
    script = tmp_path / "unprivileged.py"
    script.write_text(_UNPRIVILEGED)
    # As root, drop CAP_SYS_ADMIN (unshare(CLONE_NEWNET) then fails) to take the path an
    # ordinary user takes: a user namespace first, from a single-threaded process.
    drop = ["setpriv", "--bounding-set=-sys_admin"] if os.geteuid() == 0 else []
    proc = subprocess.run([*drop, sys.executable, str(script), str(listener)],
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "PYTHONPATH": SRC})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(next(line for line in proc.stdout.splitlines()
                          if line.startswith("RESULT "))[7:])
    if "refused" in out:  # this kernel allows no unprivileged user namespaces
        assert "unshare(CLONE_NEWUSER|CLONE_NEWNET) failed" in out["refused"]
        return
    uid = str(os.geteuid())
    assert out == {"uid_map": [uid, uid, "1"], "uid": os.geteuid(),
                   "net": "Network is unreachable"}


def _big_result(state: Any) -> bytes:
    # 150 MB fit; pickling them needs as much again, which does not.
    return b"x" * (150 * 1024**2)


def test_running_out_of_memory_while_returning_is_the_memory_limit(pool: ProcessPool) -> None:
    error = limit_error(run(pool, "big", Sandbox(memory_mb=300), _big_result))
    assert str(error) == "node 'big' exceeded its memory limit of 300 MB"
