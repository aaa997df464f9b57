"""The audit trail: every mutating API call goes into the store's audit log.

A pure ASGI middleware. For each HTTP request it settles a request id (the client's
``X-Request-Id`` when it is a sane token, else a new one, answered as ``X-Request-Id``
either way, and bound to the request's log lines as ``request_id``); for a mutating call (:mod:`~treadle.server.audit_actions` says which, and as
what action) it records, once the response is complete, an
:class:`~treadle.store.audit_log.AuditEntry`: the actor and tenant (the principal the
authentication middleware left in ``scope["state"]``: ``auth_user``, ``auth_tenant``;
"anonymous" and none without auth), the action, the resource and its id (from the path;
for a create, from the response's JSON or ``Content-Location``; for a store item, the
namespace and key of the request body), the request id and the outcome (the HTTP status).
The record is queued before the response's last bytes are sent (a stream's, as it
starts), so a client that reads the log after its call finds it; the store appends it in the background
(:mod:`~treadle.store.audit_writer`). On the thread-stream WebSocket, each mutating
command (``run.start``, ``input.respond``) is recorded as its answer is sent.

No header and no body goes into a record: only the ids named above, the method and path.
It must sit outside the authentication middleware, so refused calls (401, 403) are
recorded too; it reads the principal when the call ends.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from treadle import logs
from treadle.server.audit_actions import Action, classify, command_action
from treadle.store.audit_log import AuditEntry

__all__ = ["REQUEST_ID_HEADER", "AuditTrail", "principal", "request_id"]

log = logging.getLogger("treadle.server")

REQUEST_ID_HEADER = "x-request-id"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
_PEEK = 256 * 1024  # bodies read for ids at most this long (longer: no id, still recorded)
_STREAM_EVENTS = re.compile(r"^/threads/(?P<thread_id>[^/]+)/stream/events/?$")


def request_id(headers: Headers) -> str:
    """The client's ``X-Request-Id`` when it is a short token, else a new id."""
    given = headers.get(REQUEST_ID_HEADER)
    return given if given is not None and _SANE_ID.match(given) else uuid.uuid4().hex


def principal(scope: Scope) -> tuple[str, str | None]:
    """(actor, tenant) of the request: the authenticated user's identity, "anonymous"
    without one."""
    state = scope.get("state") or {}
    user = state.get("auth_user")
    actor = getattr(user, "identity", None) if user is not None else None
    if actor is None and isinstance(user, dict):
        actor = user.get("identity")
    tenant = state.get("auth_tenant")
    return (str(actor) if actor else "anonymous",
            str(tenant) if tenant is not None else None)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body and len(body) <= _PEEK else None
    except ValueError:
        return None


def _store_item_id(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("key"), str):
        return None
    labels = body.get("namespace")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        return None
    return ".".join(labels) + "/" + str(body["key"])


def _record(scope: Scope, entry: AuditEntry) -> None:
    app = scope.get("app")
    ctx = getattr(getattr(app, "state", None), "ctx", None)
    if ctx is None:  # the lifespan has not opened the store (or failed)
        log.warning("audit record dropped, the store is not open: %s %s", entry.action,
                    entry.outcome)
        return
    try:
        ctx.store.record_audit(entry)
    except Exception:  # never fail the call over its record  # noqa: BLE001
        log.exception("audit record dropped: %s %s", entry.action, entry.outcome)


class _Call:
    """One HTTP call being recorded: what its request and response tell."""

    def __init__(self, scope: Scope, action: Action, rid: str) -> None:
        self.scope = scope
        self.action = action
        self.request_id = rid
        self.status: int | None = None
        self.location: str | None = None
        self.request_body = b""
        self.response_body = b""
        self.json_response = False
        self.done = False

    def peek_request(self) -> bool:
        return self.action.id_from in ("store_item", "command")

    def peek_response(self) -> bool:
        return self.json_response and (self.action.id_field is not None
                                       or self.action.id_from == "command")

    def record(self, outcome: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        a = self.action
        name, resource_id = a.action, a.resource_id
        detail: dict[str, Any] = {"method": self.scope.get("method"), "path": _path(self.scope)}
        result = _json(self.response_body) if self.response_body else None
        if a.id_field and isinstance(result, dict) and isinstance(result.get(a.id_field), str):
            resource_id = result[a.id_field]
        elif a.id_from == "run_location" and self.location:
            resource_id = self.location.rstrip("/").rsplit("/", 1)[-1]
        elif a.id_from == "store_item":
            resource_id = _store_item_id(_json(self.request_body))
        if a.param("thread_id") and a.resource != "threads":
            detail["thread_id"] = a.param("thread_id")
        if a.id_from == "command":
            command = _json(self.request_body)
            method = command.get("method") if isinstance(command, dict) else None
            found = command_action(method)
            if found is None and isinstance(method, str):
                return  # a command that only reads (state.get) or subscribes
            # An unreadable command (refused before its body was read: 401, 413, 422) is
            # recorded as "threads.command", with its status.
            name = found or name
            if isinstance(result, dict) and result.get("type") == "error":
                outcome = outcome or f"error:{result.get('error')}"
            elif isinstance(result, dict) and isinstance(result.get("result"), dict):
                run_id = result["result"].get("run_id")
                if isinstance(run_id, str):
                    detail["run_id"] = run_id
        actor, tenant = principal(self.scope)
        _record(self.scope, AuditEntry(
            action=name, actor=actor, tenant=tenant, resource=a.resource,
            resource_id=resource_id, request_id=self.request_id,
            outcome=outcome or str(self.status or 500), detail=detail))


def _path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class AuditTrail:
    """Records mutating calls in the audit log; answers every HTTP call's request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket" and _STREAM_EVENTS.match(_path(scope)):
            await self._socket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = rid
        action = classify(scope["method"], _path(scope))
        call = _Call(scope, action, rid) if action is not None and action.recorded else None

        async def receive_peeking() -> Message:
            message = await receive()
            if call is not None and message["type"] == "http.request" \
                    and len(call.request_body) <= _PEEK:
                call.request_body += message.get("body", b"")
            return message

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if REQUEST_ID_HEADER not in headers:
                    headers.append(REQUEST_ID_HEADER, rid)
                if call is not None:
                    call.status = int(message["status"])
                    call.location = headers.get("content-location")
                    kind = headers.get("content-type", "")
                    call.json_response = kind.startswith("application/json")
                    if kind.startswith("text/event-stream"):
                        call.record()  # a stream may last as long as its run: record it now
            elif message["type"] == "http.response.body" and call is not None:
                if call.peek_response() and len(call.response_body) <= _PEEK:
                    call.response_body += message.get("body", b"")
                if not message.get("more_body", False):
                    call.record()  # queued before the client can see the response end
            await send(message)

        with logs.bound(request_id=rid):  # the request's log lines carry its id
            if call is None:
                await self.app(scope, receive, send_recording)
                return
            try:
                await self.app(scope, receive_peeking if call.peek_request() else receive,
                               send_recording)
            except BaseException:
                call.record(None if call.status is not None else "500")
                raise
            call.record()  # a response cut short (the client left a stream)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        rid = request_id(Headers(scope=scope))
        thread_id = _STREAM_EVENTS.match(_path(scope)).group("thread_id")  # type: ignore[union-attr]
        pending: dict[int, str] = {}  # command id -> its method, until answered

        def record(ident: int, method: str, outcome: str, answer: Any) -> None:
            detail: dict[str, Any] = {"path": _path(scope), "command_id": ident}
            result = answer.get("result") if isinstance(answer, dict) else None
            if isinstance(result, dict) and isinstance(result.get("run_id"), str):
                detail["run_id"] = result["run_id"]
            actor, tenant = principal(scope)
            _record(scope, AuditEntry(
                action=f"threads.command.{method}", actor=actor, tenant=tenant,
                resource="threads", resource_id=thread_id, request_id=f"{rid}:{ident}",
                outcome=outcome, detail=detail))

        async def receive_commands() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                text = message.get("text") or message.get("bytes") or b""
                command = _json(text.encode() if isinstance(text, str) else text)
                if isinstance(command, dict) and isinstance(command.get("id"), int) \
                        and command_action(command.get("method")) is not None:
                    pending[command["id"]] = command["method"]
            return message

        async def send_answers(message: Message) -> None:
            if pending and message["type"] == "websocket.send":
                text = message.get("text") or ""
                if text.startswith(('{"type":"success"', '{"type":"error"')):
                    answer = _json(text.encode())
                    ident = answer.get("id") if isinstance(answer, dict) else None
                    if isinstance(ident, int) and ident in pending:
                        ok = answer.get("type") == "success"
                        record(ident, pending.pop(ident),
                               "ok" if ok else f"error:{answer.get('error')}", answer)
            await send(message)

        try:
            await self.app(scope, receive_commands, send_answers)
        finally:
            for ident, method in pending.items():
                record(ident, method, "error:unanswered", None)
