"""Unit tests for treadle.runtime.process_pool: crashes and timeouts fail one task only."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from pathlib import Path
from typing import Any, cast

import cloudpickle
import pytest

from treadle.errors import NodeTimeoutError, TaskCrashedError
from treadle.runtime.process_pool import ProcessPool

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

# Ship this module's task functions by value: workers need not import the test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _alive(pid: int) -> bool:
    """True if ``pid`` is a running (non-zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_dead(pid: int, timeout: float = 10.0, *, reaped: bool = False) -> bool:
    """Wait until ``pid`` is dead (a zombie counts unless ``reaped``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (Path(f"/proc/{pid}").exists() if reaped else _alive(pid)):
            return True
        time.sleep(0.05)
    return False


def _wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# task functions (run in the workers) ---------------------------------------------


def getpid() -> int:
    return os.getpid()


def nap(seconds: float) -> tuple[int, float, float]:
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def boom(message: str) -> None:
    raise ValueError(message)


class NeedsTwoArgs(Exception):
    def __init__(self, a: int, b: int) -> None:  # unpickling calls cls(message) and fails
        super().__init__(f"{a}+{b}")


def raise_needs_two_args() -> None:
    raise NeedsTwoArgs(1, 2)


class HoldsALock(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()  # cannot be pickled at all


def raise_holds_a_lock() -> None:
    raise HoldsALock()


def exit_hard(delay: float, code: int) -> None:
    time.sleep(delay)
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    ctypes.string_at(0)


# fixtures ------------------------------------------------------------------------


@pytest.fixture
def pool2() -> Iterator[ProcessPool]:
    with ProcessPool(2) as pool:
        yield pool


@pytest.fixture
def pool3() -> Iterator[ProcessPool]:
    with ProcessPool(3) as pool:
        yield pool


# tests ---------------------------------------------------------------------------


def test_result_round_trip(pool2: ProcessPool) -> None:
    assert pool2.run(pow, 2, 10) == 1024
    assert pool2.submit(sorted, [3, 1, 2], reverse=True).result(timeout=10) == [3, 2, 1]
    assert pool2.run(dict, a={"nested": [1, 2]}) == {"a": {"nested": [1, 2]}}
    assert pool2.run(getpid) != os.getpid()


def test_exception_propagates_with_remote_traceback(pool2: ProcessPool) -> None:
    with pytest.raises(ValueError, match="kaboom") as info:
        pool2.run(boom, "kaboom")
    remote_tb: str = cast(Any, info.value).__treadle_remote_traceback__
    assert "Traceback" in remote_tb and "in boom" in remote_tb and "kaboom" in remote_tb


@pytest.mark.parametrize(
    ("raiser", "expected"),
    [
        (raise_needs_two_args, "NeedsTwoArgs('1+2')"),
        (raise_holds_a_lock, "HoldsALock('holds a lock')"),
    ],
)
def test_exception_that_cannot_travel_becomes_runtime_error(
    pool2: ProcessPool, raiser: Callable[[], None], expected: str
) -> None:
    with pytest.raises(RuntimeError) as info:
        pool2.run(raiser)
    text = str(info.value)
    assert expected in text
    assert "Remote traceback" in text and f"in {raiser.__name__}" in text
    assert f"in {raiser.__name__}" in cast(Any, info.value).__treadle_remote_traceback__
    assert pool2.run(pow, 3, 2) == 9  # the worker is fine


def test_lambda_and_closure(pool2: ProcessPool) -> None:
    factor = 3
    assert pool2.run(lambda x: x * factor, 5) == 15

    def make_adder(n: int) -> Callable[[int], int]:
        return lambda x: x + n

    assert pool2.run(make_adder(10), 5) == 15


def test_os_exit_fails_only_that_task(pool3: ProcessPool) -> None:
    sleepers = [pool3.submit(nap, 0.8), pool3.submit(nap, 0.8)]
    crasher = pool3.submit(exit_hard, 0.2, 3)
    with pytest.raises(TaskCrashedError, match="exit code 3"):
        crasher.result(timeout=10)
    results = [f.result(timeout=10) for f in sleepers]
    assert len({pid for pid, _, _ in results}) == 2
    # the pool still works, at full width
    after = [pool3.submit(nap, 0.3) for _ in range(3)]
    assert len({f.result(timeout=10)[0] for f in after}) == 3


def test_sigkill_self(pool2: ProcessPool) -> None:
    other = pool2.submit(nap, 0.5)
    with pytest.raises(TaskCrashedError, match="SIGKILL"):
        pool2.run(kill_self)
    assert other.result(timeout=10)[0] > 0
    assert pool2.run(pow, 2, 3) == 8


def test_segfault(pool2: ProcessPool) -> None:
    with pytest.raises(TaskCrashedError, match="SIGSEGV"):
        pool2.run(segfault)
    assert pool2.run(pow, 2, 4) == 16


def test_a_fresh_task_gets_a_process_of_its_own_discarded_after_it(pool2: ProcessPool) -> None:
    shared = pool2.run(getpid)
    fresh = [pool2.submit(getpid, fresh=True).result(timeout=10) for _ in range(2)]
    assert len({shared, *fresh}) == 3
    assert all(_wait_dead(pid, reaped=True) for pid in fresh)
    assert pool2.run(getpid) == shared  # the shared worker stays warm, alone
    with pytest.raises(TaskCrashedError, match="exit code 3") as info:
        pool2.submit(exit_hard, 0, 3, fresh=True).result(timeout=10)
    assert info.value.exitcode == 3
    assert pool2.run(getpid) == shared


def test_idle_worker_killed_from_outside_is_replaced(pool2: ProcessPool) -> None:
    pid = pool2.run(getpid)
    os.kill(pid, signal.SIGKILL)
    # Wait until it is reaped: a zombie leader may still have a thread holding its pipe,
    # and a task handed to a worker that is dying at that moment fails as a crash.
    assert _wait_dead(pid, reaped=True)
    assert [pool2.run(pow, 2, 5) for _ in range(4)] == [32] * 4


def test_timeout_kills_process_and_pool_recovers() -> None:
    with ProcessPool(1) as pool:
        pid = pool.run(getpid)
        slow = pool.submit(time.sleep, 30, timeout=0.5)
        queued = pool.submit(getpid)  # waits behind the slow task in the single slot
        with pytest.raises(NodeTimeoutError, match=r"timeout of 0\.5s; the process was killed"):
            slow.result(timeout=10)
        assert isinstance(slow.exception(), TimeoutError)
        new_pid = queued.result(timeout=10)
        assert new_pid != pid and not _alive(pid)
        assert pool.run(pow, 2, 6, timeout=5) == 64  # a timeout that is not reached


def test_timeout_does_not_affect_other_tasks(pool2: ProcessPool) -> None:
    other = pool2.submit(nap, 0.8)
    with pytest.raises(NodeTimeoutError):
        pool2.run(time.sleep, 30, timeout=0.3)
    assert other.result(timeout=10)[0] > 0


def test_fork_context() -> None:
    with ProcessPool(1, mp_context="fork") as pool:
        assert pool.run(lambda: "forked") == "forked"
        with pytest.raises(TaskCrashedError, match="exit code 7"):
            pool.run(exit_hard, 0, 7)
        assert pool.run(pow, 2, 2) == 4


def test_tasks_run_in_parallel(pool2: ProcessPool) -> None:
    first, second = pool2.submit(nap, 1.0), pool2.submit(nap, 1.0)
    (pid1, start1, end1), (pid2, start2, end2) = first.result(10), second.result(10)
    assert pid1 != pid2
    assert max(start1, start2) < min(end1, end2)  # the two runs overlapped


def test_more_tasks_than_slots_are_queued(pool2: ProcessPool) -> None:
    futures = [pool2.submit(pow, 2, i) for i in range(20)]
    wait(futures, timeout=20)
    assert [f.result() for f in futures] == [2**i for i in range(20)]


async def test_arun(pool2: ProcessPool) -> None:
    assert await pool2.arun(pow, 2, 7) == 128
    with pytest.raises(NodeTimeoutError):
        await pool2.arun(time.sleep, 30, timeout=0.3)


def test_shutdown_reaps_workers_and_fails_queued_tasks() -> None:
    pool = ProcessPool(2)
    pids = {pid for pid, _, _ in (f.result(10) for f in [pool.submit(nap, 0.3) for _ in range(2)])}
    assert len(pids) == 2
    running = [pool.submit(nap, 0.3) for _ in range(2)]
    queued = pool.submit(getpid)
    _wait_until(lambda: all(f.running() for f in running))
    pool.shutdown(wait=True)
    assert all(f.result(timeout=0)[0] in pids for f in running)  # running tasks finish
    with pytest.raises(RuntimeError, match="process pool shut down"):
        queued.result(timeout=0)
    assert not any(_alive(pid) for pid in pids)
    with pytest.raises(RuntimeError, match="process pool shut down"):
        pool.submit(getpid)
    pool.shutdown()  # idempotent


def test_shutdown_kill_stops_running_tasks() -> None:
    pool = ProcessPool(1)
    pid = pool.run(getpid)
    running = pool.submit(time.sleep, 30)
    _wait_until(running.running)
    pool.shutdown(kill=True)
    with pytest.raises(RuntimeError, match="process pool shut down"):
        running.result(timeout=0)
    assert not _alive(pid)


def test_unused_pool_shutdown() -> None:
    ProcessPool(4).shutdown()


def test_interpreter_exit_kills_workers(tmp_path: Path) -> None:
    script = tmp_path / "exits.py"
    script.write_text(textwrap.dedent("""
        import os, time
        from treadle.runtime.process_pool import ProcessPool

        if __name__ == "__main__":
            pool = ProcessPool(1)
            print(pool.run(lambda: os.getpid()), flush=True)  # a lambda from __main__
            pool.submit(time.sleep, 60)
            time.sleep(0.2)
    """))
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert _wait_dead(int(done.stdout.split()[0]), timeout=5)


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    script = tmp_path / "dies.py"
    script.write_text(textwrap.dedent("""
        import os, time
        from treadle.runtime.process_pool import ProcessPool

        if __name__ == "__main__":
            pool = ProcessPool(2)
            pids = [pool.submit(lambda: (time.sleep(0.3), os.getpid())[1]) for _ in range(2)]
            print(*(f.result() for f in pids), flush=True)
            pool.submit(time.sleep, 60)  # one worker busy, the other idle
            time.sleep(60)
    """))
    env = {**os.environ, "PYTHONPATH": SRC}
    parent = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(set(pids)) == 2
        time.sleep(0.3)
        parent.kill()
        parent.wait(timeout=10)
        assert all(_wait_dead(pid, timeout=10) for pid in pids)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
