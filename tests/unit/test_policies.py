"""Which errors treadle's default retry policy retries: every row of policies.TRANSIENCE
with real exception objects, and end to end through treadle.compile on every pool."""

from __future__ import annotations

import asyncio
import errno
import logging
import operator
import socket
import ssl
import urllib.error
import uuid
from pathlib import Path
from typing import Annotated, Any, TypedDict

import httpx
import psycopg
import psycopg.errors
import pytest
import requests
import urllib3
from langgraph.errors import (
    EmptyInputError,
    GraphRecursionError,
    InvalidUpdateError,
    NodeCancelledError,
)
from langgraph.errors import NodeTimeoutError as LangGraphTimeout
from langgraph.graph import START, StateGraph
from langgraph.types import RetryPolicy

import treadle
from treadle.config import Settings
from treadle.errors import (
    CircuitOpenError,
    ConfigError,
    FencedWriteError,
    NodeTimeoutError,
    RemoteNodeError,
    SandboxLimitError,
    SandboxUnavailableError,
    StoreUnavailableError,
    TaskCrashedError,
)
from treadle.runtime.policies import TRANSIENCE, Rule, classify, is_transient, transience_markdown

ROOT = Path(__file__).resolve().parents[2]


# --- real HTTP errors --------------------------------------------------------------------
def httpx_status(status: int) -> httpx.HTTPStatusError:
    response = httpx.Response(status, request=httpx.Request("GET", "https://api.example.test/v1"))
    try:
        response.raise_for_status()
    except httpx.HTTPStatusError as exc:
        return exc
    raise AssertionError(f"{status} did not raise")


def requests_status(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.url = "https://api.example.test/v1"
    try:
        response.raise_for_status()
    except requests.HTTPError as exc:
        return exc
    raise AssertionError(f"{status} did not raise")


def httpx_refused() -> httpx.ConnectError:
    """A real refused connection (port 1 on loopback has no listener)."""
    try:
        httpx.get("http://127.0.0.1:1/", timeout=5)
    except httpx.ConnectError as exc:
        return exc
    raise AssertionError("port 1 answered")


def requests_refused() -> requests.ConnectionError:
    try:
        requests.get("http://127.0.0.1:1/", timeout=5)
    except requests.ConnectionError as exc:
        return exc
    raise AssertionError("port 1 answered")


def urllib3_refused() -> urllib3.exceptions.MaxRetryError:
    try:
        urllib3.PoolManager(retries=0).request("GET", "http://127.0.0.1:1/")
    except urllib3.exceptions.MaxRetryError as exc:
        return exc
    raise AssertionError("port 1 answered")


def caused_by(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc


# --- model-provider SDK errors (not installed here: classes as the SDKs name them) -------
def sdk_class(module: str, name: str, base: type[Exception] = Exception) -> type[Exception]:
    """A class named as the SDK names it. Stainless SDKs (openai, anthropic, groq, ...)
    set ``__module__`` to the package itself, e.g. ``openai.RateLimitError``."""
    return type(name, (base,), {"__module__": module})


def stainless(package: str) -> dict[str, Any]:
    """The error classes of a Stainless-generated SDK (openai, anthropic, groq, ...)."""
    api_error = sdk_class(package, "APIError")

    def status_init(self: Any, message: str, *, status: int) -> None:
        Exception.__init__(self, message)
        self.response = httpx.Response(status, request=httpx.Request("POST", "https://x.test"))
        self.status_code = status

    status_error = type("APIStatusError", (api_error,), {"__module__": package,
                                                         "__init__": status_init})
    connection = sdk_class(package, "APIConnectionError", api_error)
    classes: dict[str, Any] = {"APIError": api_error, "APIStatusError": status_error,
               "APIConnectionError": connection,
               "APITimeoutError": sdk_class(package, "APITimeoutError", connection)}
    for name in ("RateLimitError", "InternalServerError", "OverloadedError", "BadRequestError",
                 "AuthenticationError", "NotFoundError"):
        classes[name] = sdk_class(package, name, status_error)
    return classes


openai = stainless("openai")
anthropic = stainless("anthropic")
groq_rate_limit = sdk_class("groq", "RateLimitError")  # matched by name alone


def cohere_error(status: int, name: str) -> Exception:
    api_error = type("ApiError", (Exception,), {"__module__": "cohere.core.api_error"})
    cls = type(name, (api_error,), {"__module__": f"cohere.errors.{name.lower()}"})
    exc: Exception = cls(f"status_code: {status}")
    exc.status_code = status  # type: ignore[attr-defined]
    return exc


def google_genai_error(code: int) -> Exception:
    api_error = type("APIError", (Exception,), {"__module__": "google.genai.errors"})
    cls = type("ServerError" if code >= 500 else "ClientError", (api_error,),
               {"__module__": "google.genai.errors"})
    exc: Exception = cls(f"{code} error")
    exc.code = code  # type: ignore[attr-defined]
    return exc


def mistral_error(status: int) -> Exception:
    exc = sdk_class("mistralai.models.sdkerror", "SDKError")("API error occurred")
    exc.status_code = status  # type: ignore[attr-defined]
    return exc


def aiohttp_response_error(status: int) -> Exception:
    exc = sdk_class("aiohttp.client_exceptions", "ClientResponseError")("bad status")
    exc.status = status  # type: ignore[attr-defined]
    return exc


class UserError(Exception):
    """A user-defined exception."""


class UserHTTPError(Exception):
    """A user-defined exception that carries an HTTP status: not trusted."""

    status_code = 503


HTTP_RETRIED = "HTTP 408, 429 or 5xx"
HTTP_OTHER = "any other HTTP status"
NETWORK_LIBS = "connection and timeout errors of httpx"
NETWORK = "`ConnectionError` (and its subclasses)"

#: (error, retried by the default policy?, the row that decides it: start of its text)
PG = "PostgreSQL driver errors"
CASES: list[tuple[str, BaseException, bool, str]] = [
    ("treadle-timeout", NodeTimeoutError("node 'n' exceeded its timeout"), True, "treadle `NodeTimeoutError`"),
    ("treadle-crash", TaskCrashedError("process died"), True, "treadle `NodeTimeoutError`"),
    ("sandbox-limit", SandboxLimitError("node 'n' exceeded its memory limit of 256 MB", "memory"), False, "treadle `SandboxLimitError`"),
    ("sandbox-unavailable", SandboxUnavailableError("no namespace"), False, "treadle `SandboxLimitError`"),
    ("remote-transient", RemoteNodeError("boom", transient=True), True, "treadle `RemoteNodeError`"),
    ("remote-permanent", RemoteNodeError("boom", transient=False), False, "treadle `RemoteNodeError`"),
    ("store-unavailable", StoreUnavailableError("db down"), True, "treadle `StoreUnavailableError`"),
    ("circuit-open", CircuitOpenError("open"), False, "other treadle errors"),
    ("config-error", ConfigError("bad"), False, "other treadle errors"),
    ("fenced-write", FencedWriteError("t", 3), False, "other treadle errors"),
    ("langgraph-timeout", LangGraphTimeout("n", 1.0, kind="run", run_timeout=1.0), True, "LangGraph `NodeTimeoutError`"),
    ("invalid-update", InvalidUpdateError("Expected dict, got 'x'"), False, "LangGraph's own errors"),
    ("graph-recursion", GraphRecursionError("limit"), False, "LangGraph's own errors"),
    ("empty-input", EmptyInputError(), False, "LangGraph's own errors"),
    ("node-cancelled", NodeCancelledError("n"), False, "LangGraph's own errors"),
    ("memory-error", MemoryError(), False, "`MemoryError`"),
    ("psycopg-connection-failed", psycopg.OperationalError("connection failed"), True, PG),
    ("psycopg-admin-shutdown", psycopg.errors.AdminShutdown("terminating connection"), True, PG),
    ("psycopg-serialization", psycopg.errors.SerializationFailure("retry"), True, PG),
    ("psycopg-deadlock", psycopg.errors.DeadlockDetected("deadlock"), True, PG),
    ("psycopg-too-many-connections", psycopg.errors.TooManyConnections("full"), True, PG),
    ("psycopg-unique-violation", psycopg.errors.UniqueViolation("dup"), False, PG),
    ("psycopg-bad-sql", psycopg.errors.UndefinedTable("no such table"), False, PG),
    ("psycopg-bad-data", psycopg.errors.InvalidTextRepresentation("bad"), False, PG),
    ("recursion-error", RecursionError("deep"), False, "`RecursionError`, `NotImplementedError`"),
    ("not-implemented", NotImplementedError(), False, "`RecursionError`, `NotImplementedError`"),
    *[(f"httpx-{s}", httpx_status(s), True, HTTP_RETRIED) for s in (408, 429, 500, 503)],
    *[(f"httpx-{s}", httpx_status(s), False, HTTP_OTHER) for s in (400, 404)],
    *[(f"requests-{s}", requests_status(s), True, HTTP_RETRIED) for s in (408, 429, 502)],
    *[(f"requests-{s}", requests_status(s), False, HTTP_OTHER) for s in (401, 404)],
    ("urllib-503", urllib.error.HTTPError("https://x.test", 503, "Unavailable", None, None), True, HTTP_RETRIED),  # type: ignore[arg-type]
    ("urllib-403", urllib.error.HTTPError("https://x.test", 403, "Forbidden", None, None), False, HTTP_OTHER),  # type: ignore[arg-type]
    ("aiohttp-429", aiohttp_response_error(429), True, HTTP_RETRIED),
    ("openai-rate-limit", openai["RateLimitError"]("slow down", status=429), True, HTTP_RETRIED),
    ("openai-internal", openai["InternalServerError"]("oops", status=500), True, HTTP_RETRIED),
    ("openai-bad-request", openai["BadRequestError"]("bad", status=400), False, HTTP_OTHER),
    ("openai-auth", openai["AuthenticationError"]("key", status=401), False, HTTP_OTHER),
    ("anthropic-overloaded", anthropic["OverloadedError"]("overloaded", status=529), True, HTTP_RETRIED),
    ("anthropic-not-found", anthropic["NotFoundError"]("model", status=404), False, HTTP_OTHER),
    ("groq-rate-limit-by-name", groq_rate_limit("slow down"), True, HTTP_RETRIED),
    ("cohere-429", cohere_error(429, "TooManyRequestsError"), True, HTTP_RETRIED),
    ("cohere-400", cohere_error(400, "BadRequestError"), False, HTTP_OTHER),
    ("google-genai-503", google_genai_error(503), True, HTTP_RETRIED),
    ("google-genai-429", google_genai_error(429), True, HTTP_RETRIED),
    ("google-genai-400", google_genai_error(400), False, HTTP_OTHER),
    ("mistral-503", mistral_error(503), True, HTTP_RETRIED),
    ("mistral-422", mistral_error(422), False, HTTP_OTHER),
    ("bad-certificate", ssl.SSLCertVerificationError(1, "certificate verify failed"), False, "a TLS certificate"),
    ("httpx-bad-certificate", caused_by(httpx.ConnectError("tls"), ssl.SSLCertVerificationError(1, "verify failed")), False, "a TLS certificate"),
    ("openai-bad-certificate", caused_by(openai["APIConnectionError"]("Connection error."), caused_by(httpx.ConnectError("tls"), ssl.SSLCertVerificationError(1, "verify failed"))), False, "a TLS certificate"),
    ("httpx-refused", httpx_refused(), True, NETWORK_LIBS),
    ("httpx-read-timeout", httpx.ReadTimeout("timed out"), True, NETWORK_LIBS),
    ("httpx-remote-protocol", httpx.RemoteProtocolError("peer closed connection"), True, NETWORK_LIBS),
    ("requests-refused", requests_refused(), True, NETWORK_LIBS),
    ("requests-read-timeout", requests.exceptions.ReadTimeout("timed out"), True, NETWORK_LIBS),
    ("requests-chunked", requests.exceptions.ChunkedEncodingError("broken"), True, NETWORK_LIBS),
    ("urllib3-read-timeout", urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."), True, NETWORK_LIBS),  # type: ignore[arg-type]
    ("urllib3-protocol", urllib3.exceptions.ProtocolError("Connection aborted."), True, NETWORK_LIBS),
    ("aiohttp-connection", sdk_class("aiohttp.client_exceptions", "ClientConnectionError")("x"), True, NETWORK_LIBS),
    ("openai-connection", openai["APIConnectionError"]("Connection error."), True, NETWORK_LIBS),
    ("openai-timeout", openai["APITimeoutError"]("Request timed out."), True, NETWORK_LIBS),
    ("anthropic-connection", anthropic["APIConnectionError"]("Connection error."), True, NETWORK_LIBS),
    ("connection-reset", ConnectionResetError(errno.ECONNRESET, "reset"), True, NETWORK),
    ("connection-refused", ConnectionRefusedError(errno.ECONNREFUSED, "refused"), True, NETWORK),
    ("broken-pipe", BrokenPipeError(errno.EPIPE, "pipe"), True, NETWORK),
    ("timeout", TimeoutError(), True, NETWORK),
    ("dns", socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), True, NETWORK),
    ("oserror-enetunreach", OSError(errno.ENETUNREACH, "Network is unreachable"), True, "`OSError` with a network errno"),
    ("oserror-ehostunreach", OSError(errno.EHOSTUNREACH, "No route to host"), True, "`OSError` with a network errno"),
    ("oserror-enetdown", OSError(errno.ENETDOWN, "Network is down"), True, "`OSError` with a network errno"),
    ("urlerror-refused", urllib.error.URLError(ConnectionRefusedError(errno.ECONNREFUSED, "refused")), True, "`urllib.error.URLError`"),
    ("urlerror-unknown-type", urllib.error.URLError("unknown url type: htp"), False, "`urllib.error.URLError`"),
    ("urllib3-max-retries-refused", urllib3_refused(), True, "`urllib.error.URLError`"),
    ("urllib3-max-retries-4xx", urllib3.exceptions.MaxRetryError(None, "/", urllib3.exceptions.ResponseError("too many 404 error responses")), False, "`urllib.error.URLError`"),  # type: ignore[arg-type]
    ("file-not-found", FileNotFoundError(errno.ENOENT, "No such file", "x.txt"), False, "any other `OSError`"),
    ("permission", PermissionError(errno.EACCES, "Permission denied", "x.txt"), False, "any other `OSError`"),
    ("requests-no-response", requests.HTTPError("no response"), False, "any other `OSError`"),
    ("runtime-error", RuntimeError("the service failed"), True, "any other `RuntimeError`"),
    ("group-transient", ExceptionGroup("calls", [ConnectionResetError(), TimeoutError()]), True, "`ExceptionGroup`"),
    ("group-mixed", ExceptionGroup("calls", [ConnectionResetError(), ValueError("bad")]), False, "`ExceptionGroup`"),
    ("assertion", AssertionError("invariant"), False, "anything else"),
    ("value", ValueError("bad"), False, "anything else"),
    ("type", TypeError("bad"), False, "anything else"),
    ("key", KeyError("k"), False, "anything else"),
    ("attribute", AttributeError("a"), False, "anything else"),
    ("user-defined", UserError("mine"), False, "anything else"),
    ("user-defined-with-status", UserHTTPError("mine"), False, "anything else"),
    ("httpx-unsupported-protocol", httpx.UnsupportedProtocol("htp://"), False, "anything else"),
    ("keyboard-interrupt", KeyboardInterrupt(), False, "anything else"),
]


@pytest.mark.parametrize(("exc", "retried", "row"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_transience_table(exc: BaseException, retried: bool, row: str) -> None:
    rule = classify(exc)
    assert rule.error.startswith(row), f"{exc!r} decided by {rule.error!r}"
    assert is_transient(exc) is retried


def test_every_row_of_the_table_is_tested() -> None:
    hit = {classify(exc).error for _, exc, _, _ in CASES}
    assert [r.error for r in TRANSIENCE if r.error not in hit] == []
    assert all(sum(r.error.startswith(row) for r in TRANSIENCE) == 1 for *_, row in CASES)


def test_the_docs_show_the_table() -> None:
    docs = (ROOT / "docs" / "guarantees.md").read_text()
    assert transience_markdown() in docs, "regenerate with policies.transience_markdown()"
    assert isinstance(TRANSIENCE[0], Rule)


# --- end to end: how many times a node body runs ------------------------------------------
class State(TypedDict, total=False):
    mode: str
    log: str
    out: Annotated[list[Any], operator.add]


PERMANENT: dict[str, type[BaseException]] = {
    "ValueError": ValueError, "AssertionError": AssertionError, "UserError": UserError,
    "MemoryError": MemoryError,
}
TRANSIENT: dict[str, type[BaseException]] = {
    "RuntimeError": RuntimeError, "ConnectionError": ConnectionError,
}


def behave(state: State) -> Any:
    """Counts its runs in a file (so process-pool runs count too), then behaves as
    ``mode`` says: ``string`` returns a non-dict, a permanent error's name raises it,
    a transient error's name raises it twice then succeeds, ``always`` raises
    RuntimeError every time."""
    path = Path(state["log"])
    with path.open("a") as f:
        f.write("run\n")
    runs = len(path.read_text().splitlines())
    mode = state["mode"]
    if mode == "string":
        return "not a dict"
    if mode in PERMANENT:
        raise PERMANENT[mode](f"bad input on run {runs}")
    if mode == "always" or (mode in TRANSIENT and runs <= 2):
        raise TRANSIENT.get(mode, RuntimeError)(f"service unavailable on run {runs}")
    return {"out": [runs]}


async def abehave(state: State) -> Any:
    await asyncio.sleep(0)
    return behave(state)


def graph(pool: str, **node_kw: Any) -> StateGraph[Any, Any, Any, Any]:
    b = StateGraph(State)
    b.add_node("work", abehave if pool == "async" else behave,
               metadata={"treadle": {"pool": pool}}, **node_kw)
    b.add_edge(START, "work")
    return b


def settings(tmp_path: Path) -> Settings:
    return Settings(store=f"sqlite:///{tmp_path}/p.db", retry_initial_interval=0.001,
                    retry_jitter=False, retry_max_attempts=3, process_workers=1)


async def run(g: Any, pool: str, mode: str, tmp_path: Path) -> tuple[int, BaseException | None]:
    """Runs the graph once in ``mode``: (node body runs, the error raised)."""
    log = tmp_path / f"{mode}-{uuid.uuid4().hex}.log"
    inp = {"mode": mode, "log": str(log), "out": []}
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    error: BaseException | None = None
    try:
        if pool == "async":
            await g.ainvoke(inp, config)
        else:
            await asyncio.to_thread(g.invoke, inp, config)
    except Exception as exc:  # MemoryError is an Exception too
        error = exc
    return len(log.read_text().splitlines()), error


def final_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "treadle.runtime" and r.getMessage().startswith("node 'work'")]


@pytest.mark.parametrize("pool", ["thread", "async", "process"])
async def test_programming_errors_run_once_transient_errors_are_retried(
    tmp_path: Path, pool: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="treadle.runtime")
    g = treadle.compile(graph(pool), settings=settings(tmp_path))
    try:
        runs, error = await run(g, pool, "string", tmp_path)
        assert (runs, type(error)) == (1, InvalidUpdateError)
        for mode in PERMANENT:
            caplog.clear()
            runs, error = await run(g, pool, mode, tmp_path)
            assert (runs, type(error).__name__) == (1, mode)
            assert final_lines(caplog) == [
                f"node 'work' failed ({mode}: bad input on run 1); not retried "
                "(not transient: see docs/guarantees.md#retries)"
            ]
        for mode in TRANSIENT:
            caplog.clear()
            runs, error = await run(g, pool, mode, tmp_path)
            assert (runs, error) == (3, None)
            assert [line.split(" (")[0] for line in final_lines(caplog)] == [
                "node 'work' attempt 1/3 failed", "node 'work' attempt 2/3 failed"]
        caplog.clear()
        runs, error = await run(g, pool, "always", tmp_path)
        assert (runs, type(error)) == (3, RuntimeError)
        assert final_lines(caplog)[-1] == (
            "node 'work' failed after 3 attempts (RuntimeError: service unavailable on run 3); "
            "giving up"
        )
    finally:
        g.close()


async def test_a_nodes_own_retry_policy_replaces_the_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="treadle.runtime")
    policy = RetryPolicy(retry_on=ValueError, max_attempts=2, initial_interval=0.001, jitter=False)
    g = treadle.compile(graph("thread", retry_policy=policy), settings=settings(tmp_path))
    try:
        runs, error = await run(g, "thread", "ValueError", tmp_path)
        assert (runs, type(error)) == (2, ValueError)
        assert final_lines(caplog)[-1] == (
            "node 'work' failed after 2 attempts (ValueError: bad input on run 2); giving up")
        caplog.clear()
        runs, error = await run(g, "thread", "RuntimeError", tmp_path)
        assert (runs, type(error)) == (1, RuntimeError)
        assert final_lines(caplog) == [
            "node 'work' failed (RuntimeError: service unavailable on run 1); not retried "
            "(its RetryPolicy's retry_on does not match it)"
        ]
    finally:
        g.close()
