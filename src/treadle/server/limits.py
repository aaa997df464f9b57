"""What the HTTP API accepts, decided in one place, and the checks that run before any handler.

Every limit is here and in docs/api.md ("Limits"). A request over one is refused at the
edge (422 naming the field, 413 for the body size) before anything is written, the same
on every backend, so the store never sees what it cannot hold:

- every JSON body: at most ``MAX_JSON_DEPTH`` nested objects/arrays; numbers finite
  (no ``NaN``, ``Infinity``, nor a literal such as ``1e400`` that overflows a double);
  text Unicode (no lone surrogate) without NUL; the same for query parameters and the path;
- ids (threads, runs, assistants, crons, checkpoints; path or body) in a request that
  writes: ``MAX_ID_LENGTH`` characters;
- store items: key and namespace (labels joined by ``.``) each ``MAX_STORE_PATH_BYTES``
  bytes of UTF-8, at most ``MAX_NAMESPACE_LABELS`` labels; TTLs at most ``MAX_TTL_MINUTES``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.requests import HTTPConnection

from treadle.errors import InputError

__all__ = [
    "MAX_ID_LENGTH", "MAX_JSON_DEPTH", "MAX_NAMESPACE_LABELS", "MAX_STORE_PATH_BYTES",
    "MAX_TTL_MINUTES", "BodyLimit", "check_json", "valid_request",
]

# Deeper documents break recursive encoders (and a response that cannot be encoded after
# the write is a half-done request); no LangGraph state needs more.
MAX_JSON_DEPTH = 100
# Ids are any text, up to this many characters: a PostgreSQL index entry holds ~2.7 kB.
MAX_ID_LENGTH = 256
# A store item's (namespace, key) is one PostgreSQL index entry: both fit together.
MAX_STORE_PATH_BYTES = 1024
MAX_NAMESPACE_LABELS = 32
# 100 years: a later expiry overflows the databases' timestamps.
MAX_TTL_MINUTES = 100 * 366 * 24 * 60

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# In a raw body, the only ways to spell NUL or a lone surrogate: a JSON escape, or (for a
# surrogate) its UTF-8-style bytes, which start with 0xED. Text is checked only then.
_SUSPECT_TEXT = re.compile(rb"\\u0000|\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\xed")


def _refuse(loc: list[str | int], msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": tuple(loc), "msg": msg,
                                    "input": None}])


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "holds a NUL character (\\u0000), which cannot be stored; remove it"
    if _LONE_SURROGATE.search(text):
        return ("holds text that is not valid Unicode (a lone surrogate escape such as "
                "\\udc00); send UTF-8 text")
    return None


async def valid_request(request: HTTPConnection) -> None:
    """422 for what no store can hold or no response can carry, in the path, the query
    or a JSON body (see the module docstring). Checked before anything is written."""
    if "\x00" in request.url.path:
        raise InputError("the path holds a NUL character; ids cannot contain it")
    if request.scope.get("method") in ("POST", "PUT", "PATCH"):
        # Writes only: a longer id stored before this limit stays readable and deletable.
        for name, value in request.path_params.items():
            if isinstance(value, str) and len(value) > MAX_ID_LENGTH:
                raise _refuse(["path", name], f"at most {MAX_ID_LENGTH} characters")
    for name, value in request.query_params.multi_items():
        problem = _text_problem(name) or _text_problem(value)
        if problem:
            raise _refuse(["query", name], f"the query parameter {problem}")
    if not isinstance(request, Request) or request.method not in ("POST", "PUT", "PATCH",
                                                                  "DELETE"):
        return  # a WebSocket, or a request without a body
    body = await request.body()
    if body.strip():
        check_json(body)


def check_json(body: bytes | str) -> None:
    """RequestValidationError (422, ``loc`` the field) for a JSON document that breaks a
    limit above; nothing for one that is not JSON (its reader answers that)."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    odd: list[str] = []  # the non-finite numbers met while parsing

    def constant(text: str) -> _NotFinite:
        odd.append(text)
        return _NotFinite(text)

    def number(text: str) -> float | _NotFinite:
        value = float(text)
        return value if math.isfinite(value) else constant(text)

    try:
        doc = json.loads(raw, parse_constant=constant, parse_float=number)
    except RecursionError as exc:
        raise _refuse(["body"], f"nested deeper than {MAX_JSON_DEPTH} levels") from exc
    except ValueError:
        return  # not JSON: the route's own validation answers (422 json_invalid)
    text = _SUSPECT_TEXT.search(raw) is not None
    if odd or text or _too_deep(doc):
        _walk(doc, text)  # the slow walk finds where, for the answer


def _too_deep(doc: Any) -> bool:
    """Nested over MAX_JSON_DEPTH: a level-by-level pass (most bodies are shallow and wide)."""
    level = [doc] if isinstance(doc, dict | list) else []
    for _ in range(MAX_JSON_DEPTH):
        if not level:
            return False
        level = [v for c in level for v in (c.values() if type(c) is dict else c)
                 if type(v) is dict or type(v) is list]
    return bool(level)


class _NotFinite:
    """A number no JSON encoder nor store takes (NaN, Infinity, 1e400), where it was."""

    def __init__(self, text: str) -> None:
        self.text = text


# Where an item sits: (depth, its key or index, the parent's Where); built in O(1) per item,
# spelled out only for the answer.
_Where = tuple[int, "str | int", "Any"]


def _loc(where: _Where | None) -> list[str | int]:
    path: list[str | int] = []
    while where is not None:
        path.append(where[1])
        where = where[2]
    return path[::-1]


def _walk(doc: Any, text: bool = True) -> None:
    """Depth, numbers and (``text``) strings of a parsed body, without recursion; 422 at the
    first fault."""
    stack: list[tuple[Any, _Where]] = [(doc, (0, "body", None))]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item) if text else None
            if problem:
                raise _refuse(_loc(where), f"the body {problem}")
        elif isinstance(item, dict | list):
            depth = where[0] + 1
            if depth > MAX_JSON_DEPTH:
                raise _refuse(_loc(where)[:3], f"nested deeper than {MAX_JSON_DEPTH} levels; "
                                               "flatten it")
            if isinstance(item, dict):
                for key, value in item.items():
                    problem = _text_problem(key) if text else None
                    if problem:
                        raise _refuse(_loc(where), f"a key of the body {problem}")
                    stack.append((value, (depth, key, where)))
            else:
                stack.extend((value, (depth, i, where)) for i, value in enumerate(item))
        elif isinstance(item, _NotFinite):
            raise _refuse(_loc(where), f"{item.text} is not a number JSON or the store can "
                                       "hold; send a finite number (or null)")


Scope = dict[str, Any]


class BodyLimit:
    """Pure ASGI middleware (it never buffers the body; it counts as it passes)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._reject(send)
                    return
        seen = 0
        started = over = False

        async def limited_receive() -> Any:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if over:
                # FastAPI turns the failed read into "400 error parsing the body": the
                # client is told the real reason instead.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Any) -> None:
        body = json.dumps({"detail": f"request body too large (limit {self.max_bytes} bytes; "
                                     "set TREADLE_MAX_BODY_BYTES to raise it)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
