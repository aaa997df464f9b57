"""End-to-end tests of the ``treadle`` command line, run as a real subprocess.

Every call is ``python -m treadle ...`` with its working directory in a temporary
directory and ``TREADLE_STORE`` pointing at a SQLite file there. Starting Python and
importing LangGraph costs about a second per call, so the independent single-call
cases are started together in the background at the beginning of the module
(``BATCH``) and the tests that need them wait for their result.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
GRAPHS = Path(__file__).resolve().parent / "graphs"
SIMPLE = str(GRAPHS / "simple.py")
FIVE = str(GRAPHS / "five.py")
ASKS = str(GRAPHS / "asks.py")
BROKEN = str(GRAPHS / "broken.py")
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def err_lines(self) -> list[str]:
        return self.stderr.splitlines()


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TREADLE_") and k not in ("FORCE_COLOR", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env["TREADLE_STORE"] = f"sqlite:///{workdir / 't.db'}"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def treadle(workdir: Path, *args: str, timeout: float = 60, **env: str) -> Result:
    """Run ``python -m treadle ARGS`` in ``workdir`` with the store ``workdir/t.db``."""
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "treadle", *args], cwd=workdir, env=_env(workdir, **env),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def treadle_in_terminal(workdir: Path, *args: str, timeout: float = 60) -> Result:
    """Run the CLI with stdout on a pseudo-terminal (120 columns); stderr is a pipe."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    workdir.mkdir(parents=True, exist_ok=True)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "treadle", *args], cwd=workdir, env=_env(workdir),
        stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    code = proc.wait(timeout=timeout)
    reader.join(timeout=5)
    os.close(master)
    out = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    return Result(code, ANSI.sub("", out), stderr)


# --- the background batch of independent calls ----------------------------------------------

BATCH: dict[str, tuple[str, ...] | tuple[tuple[str, ...], dict[str, str]]] = {
    "json": ("run", f"{SIMPLE}:graph", "--input", '{"name": "bob"}', "--thread", "J1", "--json",
             "--max-workers", "2", "--recursion-limit", "10"),
    # module REF form (found from the cwd), a factory, and every flag from its env twin
    "piped": (("run", "simple:make_graph"),
              {"TREADLE_INPUT": '{"name": "ann"}', "TREADLE_THREAD": "P1",
               "TREADLE_MAX_WORKERS": "2", "TREADLE_RECURSION_LIMIT": "10"}),
    "no_colon": ("run", "simple"),
    "no_file": ("run", "missing.py:graph"),
    "no_attr": ("run", f"{SIMPLE}:graphh"),
    "wrong_type": ("run", f"{SIMPLE}:State"),
    "no_module": ("run", "no_such_module_xyz.agent:graph"),
    "import_fails": ("run", f"{BROKEN}:graph"),
    "debug": ("run", f"{BROKEN}:graph", "--debug"),
    "bad_json": ("run", f"{SIMPLE}:graph", "--input", '{"name": }'),
    "resume_without_thread": ("run", f"{SIMPLE}:graph", "--resume"),
    "resume_unknown_thread": ("run", f"{SIMPLE}:graph", "--thread", "nope", "--resume"),
    "unreachable": ("run", f"{SIMPLE}:graph", "--store", UNREACHABLE),
    "bad_setting": (("threads", "show", "x"), {"TREADLE_RETRY_MAX_ATTEMPTS": "0"}),
    "show_no_store": ("threads", "show", "nope"),
    "version": ("version",),
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Result]]]:
    root = tmp_path_factory.mktemp("batch")
    (root / "piped").mkdir()
    for name in ("simple.py", "helpers.py"):  # the module REF form finds them from the cwd
        (root / "piped" / name).write_text((GRAPHS / name).read_text())
    pool = ThreadPoolExecutor(max_workers=max(2, min(6, os.cpu_count() or 2)))
    futures = {}
    for name, spec in BATCH.items():
        args, env = (spec[0], spec[1]) if isinstance(spec[0], tuple) else (spec, {})
        futures[name] = pool.submit(treadle, root / name, *args, **env)  # type: ignore[arg-type]
    yield futures
    pool.shutdown(wait=True)


@pytest.fixture(scope="module", autouse=True)
def _start_batch_early(batch: dict[str, Future[Result]]) -> None:
    """Start the batch before the first test: it runs beside the sequential tests below."""


def _get(batch: dict[str, Future[Result]], name: str) -> Result:
    return batch[name].result(timeout=120)


def _one_error_line(result: Result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.err_lines
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


# --- resume after a failure --------------------------------------------------------------------


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    log, marker = tmp_path / "log.txt", tmp_path / "marker"
    state = json.dumps({"log": str(log), "marker": str(marker)})

    first = treadle(tmp_path, "run", f"{FIVE}:builder", "--input", state, "--thread", "T",
                    "--json")
    assert first.returncode == 1
    line = _one_error_line(first)
    assert "node 'n3' failed: ValueError: marker file missing" in line
    assert f"treadle run {FIVE}:builder --thread T --resume" in line
    assert first.stdout == ""
    assert log.read_text().split() == ["n1", "n2", "n3"]

    shown = treadle(tmp_path, "threads", "show", "T", "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["next"] == ["n3"]
    assert info["values"]["done"] == ["n1", "n2"]
    assert info["pending_writes"] >= 1
    assert len(info["errors"]) == 1 and "marker file missing" in info["errors"][0]["error"]
    storage = info["storage"]  # the thread's rows, per table (no API record: no TTL)
    assert storage["checkpoints"] == storage["tables"]["checkpoints"]["rows"] >= 3
    assert storage["tables"]["thread"]["rows"] == 0 and info["ttl"] is None
    assert storage["bytes"] == sum(t["bytes"] for t in storage["tables"].values()) > 0
    human = treadle(tmp_path, "threads", "show", "T")
    assert re.search(rf"^storage +{storage['bytes']:,} bytes: ", human.stdout, re.M), human.stdout
    unknown = treadle(tmp_path, "threads", "show", "nope")
    assert unknown.returncode == 1
    assert _one_error_line(unknown).startswith("error: no thread 'nope' in sqlite:///")

    marker.touch()
    second = treadle(tmp_path, "run", f"{FIVE}:builder", "--thread", "T", "--resume", "--json")
    assert second.returncode == 0, second.stderr
    final = json.loads(second.stdout)
    assert final["done"] == ["n1", "n2", "n3", "n4", "n5"]
    # n1 and n2 ran exactly once; n3 ran again (it failed), then n4 and n5
    assert log.read_text().split() == ["n1", "n2", "n3", "n3", "n4", "n5"]

    listed = treadle(tmp_path, "threads", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["thread", "status", "epoch", "checkpoints", "updated_at", "latest",
                              "checkpoint"]
    thread_id, status, epoch, checkpoints, _updated, latest = row.split()
    assert (thread_id, status, epoch) == ("T", "idle", "2")  # two executions claimed it
    assert int(checkpoints) >= 6
    assert len(latest) == len(info["checkpoint_id"]) and latest != info["checkpoint_id"]


def test_threads_list_and_show_give_each_threads_status(tmp_path: Path) -> None:
    marker = tmp_path / "no-marker"
    runs = {
        "done": ("run", f"{SIMPLE}:graph", "--input", '{"name": "a"}', "--thread", "done"),
        "asked": ("run", f"{ASKS}:builder", "--input", '{"question": "q"}', "--thread", "asked"),
        "failed": ("run", f"{FIVE}:builder", "--thread", "failed", "--input",
                   json.dumps({"log": str(tmp_path / "log"), "marker": str(marker)})),
        "queued": ("run", f"{SIMPLE}:graph", "--input", '{"name": "b"}', "--thread", "queued"),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda args: treadle(tmp_path, *args, "--json"), runs.values()))
    assert [r.returncode for r in done] == [0, 0, 1, 0], [r.stderr for r in done]
    import treadle as treadle_lib
    from treadle.cluster import client
    from treadle.graphs.refs import load_graph

    url = f"sqlite:///{tmp_path / 't.db'}"  # a run queued for workers, none running: busy
    with treadle_lib.compile(load_graph(f"{SIMPLE}:graph"), store_url=url,
                             graph_id="simple") as graph:
        client.submit(graph, {"name": "c"}, {"runtime": "distributed",
                                             "configurable": {"thread_id": "queued"}}, {})
    expected = {"done": "idle", "asked": "interrupted", "failed": "error", "queued": "busy"}
    listed = treadle(tmp_path, "threads", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert {t["thread_id"]: t["status"] for t in json.loads(listed.stdout)} == expected
    table = treadle(tmp_path, "threads", "list")
    assert {line.split()[0]: line.split()[1] for line in table.stdout.splitlines()[1:]} == expected
    shown = treadle(tmp_path, "threads", "show", "asked", "--json")
    assert json.loads(shown.stdout)["status"] == "interrupted"


# --- interrupts, on a terminal ----------------------------------------------------------------


def test_interrupt_live_display_and_resume_with_a_value(tmp_path: Path) -> None:
    shown = treadle_in_terminal(
        tmp_path, "run", f"{ASKS}:builder", "--input", '{"question": "name?"}', "--thread", "Q"
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    out = shown.stdout
    assert re.search(r"node\s+status\s+attempts\s+duration", out), out  # the live table
    assert re.search(r"ask\s+interrupted\s+1\s", out), out
    assert '"question": "name?"' in out
    assert "thread: Q" in out
    assert 'interrupted: {"question": "name?"}' in out
    assert f"resume with: treadle run {ASKS}:builder --thread Q --resume --input" in out

    resumed = treadle(tmp_path, "run", f"{ASKS}:builder", "--thread", "Q", "--resume",
                      "--input", '"bob"', "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {"question": "name?", "answer": "bob"}


@pytest.mark.parametrize("flags", [[], ["--json"]], ids=["piped", "json"])
def test_interrupt_on_a_new_thread_prints_the_resume_command(tmp_path: Path,
                                                              flags: list[str]) -> None:
    stopped = treadle(tmp_path, "run", f"{ASKS}:builder", "--input", '{"question": "name?"}',
                      *flags)
    assert stopped.returncode == 0, stopped.stderr
    hint = re.search(rf"^resume with: treadle run {re.escape(ASKS)}:builder --thread (\S+) "
                     r"--resume --input '<JSON value>'$", stopped.stderr, re.M)
    assert hint, stopped.stderr
    thread_id = hint.group(1)
    assert f"thread: {thread_id}" in stopped.err_lines
    if flags:  # stdout stays one JSON line: the state, with its interrupt
        (line,) = stopped.stdout.splitlines()
        assert json.loads(line)["__interrupt__"][0]["value"] == {"question": "name?"}
    resumed = treadle(tmp_path, "run", f"{ASKS}:builder", "--thread", thread_id, "--resume",
                      "--input", '"bob"', "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {"question": "name?", "answer": "bob"}
    assert resumed.stderr == ""  # finished: nothing to resume, nothing said


# --- migrate ----------------------------------------------------------------------------------


def test_migrate_and_refuse_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    url = f"sqlite:///{db}"
    first = treadle(tmp_path, "migrate", "--store", url)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_initial.sql" in first.stdout
    assert "applied 0002_run_queue.sql" in first.stdout
    from treadle.store.migrate import load_migrations

    newest = load_migrations("sqlite")[-1].version
    assert f"schema version {newest} ({url})" in first.stdout

    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO treadle_migrations (version, name) VALUES (99, '0099_x.sql')")
    newer = treadle(tmp_path, "migrate", "--store", url, "--json")
    line = _one_error_line(newer)
    assert newer.returncode == 1
    assert "schema version 99" in line and "upgrade treadle" in line
    assert newer.stdout == ""


# --- run ----------------------------------------------------------------------------------------


def test_run_json_prints_only_the_final_state(batch: dict[str, Future[Result]]) -> None:
    r = _get(batch, "json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # the node's own print() is the graph's business; treadle adds exactly one line
    assert lines[0] == "done node prints to stdout"
    assert len(lines) == 2
    assert json.loads(lines[1]) == {
        "name": "bob", "greeting": "HELLO BOB!", "steps": ["hello", "louder", "done"],
    }
    assert r.stderr == ""


def test_run_piped_module_ref_prints_progress_on_stderr(batch: dict[str, Future[Result]]) -> None:
    r = _get(batch, "piped")
    assert r.returncode == 0, r.stderr
    out = r.stdout.replace("done node prints to stdout\n", "")
    assert json.loads(out) == {
        "name": "ann", "greeting": "HELLO ANN!", "steps": ["hello", "louder", "done"],
    }
    for node in ("hello", "louder", "done"):
        assert f"[{node}] running" in r.err_lines
        assert any(line.startswith(f"[{node}] done in ") for line in r.err_lines), r.stderr
    assert r.err_lines[-1] == "thread: P1"
    assert "\x1b[" not in r.stderr + r.stdout  # no colours or cursor moves when piped


# --- one-line errors ---------------------------------------------------------------------------

ERRORS = {
    "no_colon": (1, "error: graph reference 'simple' is not of the form "
                    "path/to/file.py:attr or module.path:attr"),
    "no_file": (1, "error: no such file: missing.py"),
    "no_attr": (1, f"error: {SIMPLE} has no attribute 'graphh' (found: graph, compiled)"),
    "wrong_type": (1, f"error: {SIMPLE}:State is a class (State), not a LangGraph graph"),
    "no_module": (1, "error: no module named 'no_such_module_xyz.agent'"),
    "import_fails": (1, f"error: importing {BROKEN} failed: RuntimeError: broken on purpose"),
    "bad_json": (1, "error: invalid --input JSON: Expecting value at line 1 column 10 (char 9)"),
    "resume_without_thread": (2, "error: Invalid value for '--resume': --resume needs --thread"),
    "resume_unknown_thread": (1, "error: thread 'nope' has no checkpoint in sqlite:///"),
    "bad_setting": (1, "error: invalid setting TREADLE_RETRY_MAX_ATTEMPTS: Input should be"),
    "show_no_store": (1, "error: no treadle store at sqlite:///"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line(batch: dict[str, Future[Result]], case: str) -> None:
    r = _get(batch, case)
    code, prefix = ERRORS[case]
    line = _one_error_line(r)
    assert r.returncode == code, r.stderr
    assert line.startswith(prefix), line
    assert r.stdout == ""


def test_bad_json_message_matches_the_json_module() -> None:
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads('{"name": }')
    e = info.value
    assert ERRORS["bad_json"][1].endswith(
        f"{e.msg} at line {e.lineno} column {e.colno} (char {e.pos})"
    )


def test_unreachable_store_fails_in_one_line(batch: dict[str, Future[Result]]) -> None:
    r = _get(batch, "unreachable")  # it gives up by itself: a CLI that retried forever fails on the timeout
    line = _one_error_line(r)
    assert r.returncode == 1
    assert "127.0.0.1" in line


def test_debug_shows_the_traceback(batch: dict[str, Future[Result]]) -> None:
    r = _get(batch, "debug")
    assert r.returncode == 1
    assert "Traceback (most recent call last)" in r.stderr
    assert "RuntimeError: broken on purpose" in r.stderr  # the user's exception, chained
    assert r.err_lines[-1] == f"error: importing {BROKEN} failed: RuntimeError: broken on purpose"


def test_version(batch: dict[str, Future[Result]]) -> None:
    r = _get(batch, "version")
    assert r.returncode == 0
    assert re.fullmatch(r"treadle \d+\.\d+\.\d+\S* \(langgraph .+, python .+\)\n", r.stdout)
