"""A2A messages and tasks <-> treadle runs (for :mod:`treadle.server.a2a`).

A task is a run (``Task.id`` is the run id), its context the run's thread (``contextId`` is
the thread id). A user message becomes the run's input: its text parts one
``{"role": "user", "content": ...}`` entry of ``messages`` (the graph's ``messages`` key, as
LangGraph Platform maps it), the keys of its data parts merged into the input as they are.
File parts are refused. The agent's reply is the last message of the run's output when it
is an AI message (its text), else, for a graph without ``messages``, the output as a data
part.
"""

from __future__ import annotations

import json
from typing import Any

from treadle.errors import InputError
from treadle.jsonable import iso
from treadle.server.serialize import run_output, run_spec
from treadle.store.queue import RunRow

__all__ = ["MESSAGE_ID_KEY", "input_of", "reply_parts", "task_of", "task_state"]

#: The run metadata key holding the A2A ``messageId`` of the message that started it.
MESSAGE_ID_KEY = "a2a_message_id"

# treadle's run statuses -> A2A task states ("interrupted": see task_state)
_STATES = {"pending": "submitted", "running": "working", "success": "completed",
           "error": "failed", "timeout": "failed", "cancelled": "canceled"}


def input_of(message: Any) -> dict[str, Any]:
    """The run input of an A2A user ``message``; InputError for file parts or nothing."""
    texts: list[str] = []
    data: dict[str, Any] = {}
    for part in message.parts:
        inner = part.root
        if inner.kind == "text":
            texts.append(inner.text)
        elif inner.kind == "data":
            data.update(inner.data)
        else:
            raise InputError(f"{inner.kind} parts are not supported: send text or data parts")
    if not texts and not data:
        raise InputError("the message has no text or data part")
    if texts:
        data["messages"] = [*(data.get("messages") or []),
                            {"role": "user", "content": "\n".join(texts)}]
    return data


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b if isinstance(b, str) else str(b.get("text", ""))
                       for b in content if isinstance(b, str | dict))
    return json.dumps(content, default=str)


def reply_parts(output: Any) -> list[Any]:
    """The agent's reply in a run's output (values), as A2A parts; [] when there is none."""
    from a2a.types import DataPart, Part, TextPart

    if not isinstance(output, dict):
        return [] if output is None else [Part(root=DataPart(data={"result": output}))]
    messages = output.get("messages")
    if isinstance(messages, list):
        last = messages[-1] if messages else None
        if isinstance(last, dict) and last.get("type") in ("ai", "AIMessageChunk"):
            return [Part(root=TextPart(text=_text(last.get("content"))))]
        return []
    return [Part(root=DataPart(data=output))]


def _ended(row: RunRow) -> bool:
    return row.status not in ("pending", "running")


def task_state(row: RunRow) -> str:
    """The A2A state of the task a run is: a run paused by the graph (``interrupt()`` or
    ``interrupt_before``) is ``input-required``; one stopped by a cancel, ``canceled``."""
    if row.status == "interrupted":
        return "canceled" if row.cancel else "input-required"
    return _STATES.get(row.status, "unknown")


def _user_message(row: RunRow, spec: Any) -> Any:
    from a2a.types import DataPart, Message, Part, Role, TextPart

    given = spec.input if isinstance(spec.input, dict) else {}
    parts: list[Any] = []
    messages = given.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        parts.append(Part(root=TextPart(text=_text(messages[-1].get("content")))))
    rest = {k: v for k, v in given.items() if k != "messages"}
    if rest:
        parts.append(Part(root=DataPart(data=rest)))
    try:
        meta = json.loads(row.metadata or "{}")
    except ValueError:
        meta = {}
    return Message(role=Role.user, parts=parts or [Part(root=TextPart(text=""))],
                   message_id=str(meta.get(MESSAGE_ID_KEY) or f"{row.run_id}-input"),
                   context_id=row.thread_id, task_id=row.run_id)


def task_of(row: RunRow, history_length: int | None = None) -> Any:
    """The A2A ``Task`` run ``row`` is, with its status, reply artifact and history."""
    from a2a.types import Artifact, Message, Part, Role, Task, TaskState, TaskStatus, TextPart

    state = task_state(row)
    parts: list[Any] = []
    if _ended(row):
        output = run_output(row)
        if isinstance(output, dict) and "__error__" in output:
            err = output["__error__"]
            parts = [Part(root=TextPart(text=f"{err.get('error')}: {err.get('message')}"))]
        elif state != "canceled":
            parts = reply_parts(output)
    reply = None if not parts else Message(
        role=Role.agent, parts=parts, message_id=f"{row.run_id}-reply",
        context_id=row.thread_id, task_id=row.run_id)
    when = row.ended_at or row.started_at or row.created_at
    status = TaskStatus(state=TaskState(state), message=reply, timestamp=iso(when))
    artifacts = None
    if reply is not None and state == "completed":
        artifacts = [Artifact(artifact_id=f"{row.run_id}-reply", name="reply", parts=parts)]
    history = [_user_message(row, run_spec(row))] + ([reply] if reply is not None else [])
    if history_length is not None:
        history = history[-history_length:] if history_length > 0 else []
    return Task(id=row.run_id, context_id=row.thread_id, status=status, artifacts=artifacts,
                history=history)
