"""LangGraph chunks -> events of the v3 thread protocol (``langchain_protocol``).

A :class:`RunConverter` turns one run's recorded stream chunks (and its end) into
protocol events: root and subgraph ``lifecycle``, ``values``, ``updates``, the
``messages`` content-block sequence, ``input.requested`` for interrupts, ``custom``,
``tasks`` and ``checkpoints``. ``treadle.server.thread_events`` numbers, filters
and serves them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from treadle.jsonable import to_json
from treadle.server.runs import run_output
from treadle.store.queue import RunRow

__all__ = ["Out", "RunConverter", "error_text", "split_chunk"]

Out = tuple[str, list[str], Any]  # (method, namespace, data) of one protocol event


def split_chunk(chunk: Any) -> tuple[tuple[str, ...], str, Any]:
    if isinstance(chunk, tuple) and len(chunk) == 3:
        return tuple(chunk[0]), chunk[1], chunk[2]
    if isinstance(chunk, tuple) and len(chunk) == 2:
        return (), chunk[0], chunk[1]
    return (), "values", chunk


def error_text(row: RunRow) -> str:
    err = run_output(row)
    if isinstance(err, dict) and isinstance(err.get("__error__"), dict):
        e = err["__error__"]
        return f"{e.get('error')}: {e.get('message')}"
    return row.error or row.status


# --- protocol events: recorded chunks -> langchain_protocol events --------------------------
_CALL_CHUNKS = {"tool_call_chunk": "tool_call", "server_tool_call_chunk": "server_tool_call"}
_HEAVY = frozenset({"args", "data", "output", "transcript", "value"})


def _content_blocks(msg: Any) -> list[tuple[Any, dict[str, Any]]]:
    """(stable key, block) of a message's protocol content blocks (LangChain's view)."""
    try:
        raw = msg.content_blocks
    except Exception:  # noqa: BLE001 - a provider's content LangChain cannot read
        return []
    out: list[tuple[Any, dict[str, Any]]] = []
    for i, block in enumerate(raw):
        if isinstance(block, dict):
            index = block.get("index")
            out.append((index if index is not None else ("", block.get("type"), i), dict(block)))
    return out


def _skeleton(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind in ("text", "reasoning"):
        skel = {k: v for k, v in block.items() if k not in (kind, "index", "annotations")}
        return {**skel, kind: ""}
    if kind in _CALL_CHUNKS:
        skel = {"type": kind, "id": block.get("id"), "name": block.get("name"), "args": ""}
        return skel | ({"index": block["index"]} if block.get("index") is not None else {})
    skel = {k: v for k, v in block.items() if k not in _HEAVY}
    if kind in ("tool_call", "server_tool_call"):
        skel["args"] = {}
    elif kind == "non_standard":
        skel["value"] = {}
    return skel


def _delta(block: dict[str, Any]) -> dict[str, Any] | None:
    kind = block.get("type")
    if kind in ("text", "reasoning"):
        text = block.get(kind)
        return {"type": f"{kind}-delta", kind: text} if text else None
    if kind in _CALL_CHUNKS:
        return {"type": "tool-call-delta", "args": block["args"]} if block.get("args") else None
    if block.get("data"):
        delta = {"type": "data-delta", "data": block["data"]}
        return delta | ({"encoding": "base64"} if block.get("encoding") == "base64" else {})
    return None


def _merge(acc: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind != acc.get("type"):
        return dict(block)
    if kind in ("text", "reasoning"):
        return {**block, **acc, kind: (acc.get(kind) or "") + (block.get(kind) or "")}
    if kind in _CALL_CHUNKS:
        merged = {**acc, "args": (acc.get("args") or "") + (block.get("args") or "")}
        for key in ("id", "name"):
            if merged.get(key) is None and block.get(key) is not None:
                merged[key] = block[key]
        return merged
    return dict(block)  # self-contained blocks: the latest is the block


def _finalize(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    if kind in _CALL_CHUNKS:
        raw = block.get("args") or ""
        try:
            args = json.loads(raw) if raw else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):
            return {"type": "invalid_tool_call", "id": block.get("id"), "name": block.get("name"),
                    "args": raw, "error": "the arguments are not a JSON object"}
        return {"type": _CALL_CHUNKS[kind], "id": block.get("id") or "",
                "name": block.get("name") or "", "args": args}
    return {k: v for k, v in block.items() if k != "index"}


def _role(msg: Any) -> str | None:
    kind = str(getattr(msg, "type", "")).lower()
    for prefix, role in (("ai", "ai"), ("human", "human"), ("system", "system")):
        if kind.startswith(prefix):
            return role
    return None  # tool messages belong to the tools channel


@dataclass
class _OpenMessage:
    message_id: str
    blocks: dict[Any, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)


class _Messages:
    """Chat model messages (streamed chunks or whole messages) -> ``messages`` events, one
    ``message-start`` ... ``message-finish`` lifecycle per message id and namespace."""

    def __init__(self) -> None:
        self.open: dict[tuple[tuple[str, ...], str], _OpenMessage] = {}
        self.finished: set[tuple[tuple[str, ...], str]] = set()

    def feed(self, ns: tuple[str, ...], msg: Any, meta: Any) -> list[Out]:
        role = _role(msg)
        if role is None:
            return []
        message_id = str(getattr(msg, "id", None) or "")
        key = (ns, message_id)
        is_chunk = type(msg).__name__.endswith("Chunk")
        out: list[dict[str, Any]] = []
        current = self.open.get(key)
        if current is None:
            if key in self.finished:
                return []
            current = self.open[key] = _OpenMessage(message_id)
            start: dict[str, Any] = {"event": "message-start", "role": role, "id": message_id}
            node = meta.get("langgraph_node") if isinstance(meta, dict) else None
            info = {k: v for k, v in (("langgraph_node", node),) if isinstance(v, str)}
            start["metadata"] = info
            out.append(start)
        elif not is_chunk:  # the whole message of one that was streamed: it is complete
            return self._wrap(ns, self._close(key), message_id)
        for block_key, block in _content_blocks(msg):
            found = current.blocks.get(block_key)
            if found is None:
                wire = len(current.blocks)
                current.blocks[block_key] = (wire, block)
                out.append({"event": "content-block-start", "index": wire,
                            "content": _skeleton(block)})
            else:
                wire = found[0]
                current.blocks[block_key] = (wire, _merge(found[1], block))
            delta = _delta(block)
            if delta is not None:
                out.append({"event": "content-block-delta", "index": wire, "delta": delta})
        for name, count in (getattr(msg, "usage_metadata", None) or {}).items():
            if name in ("input_tokens", "output_tokens", "total_tokens") and isinstance(count, int):
                current.usage[name] = current.usage.get(name, 0) + count
        current.metadata.update(to_json(getattr(msg, "response_metadata", None) or {}))
        if not is_chunk or getattr(msg, "chunk_position", None) == "last":
            out.extend(self._close(key))
        return self._wrap(ns, out, message_id)

    def _close(self, key: tuple[tuple[str, ...], str], error: str | None = None
               ) -> list[dict[str, Any]]:
        current = self.open.pop(key)
        self.finished.add(key)
        if error is not None:
            return [{"event": "error", "message": error}]
        out: list[dict[str, Any]] = [
            {"event": "content-block-finish", "index": wire, "content": _finalize(block)}
            for wire, block in current.blocks.values()]
        finish: dict[str, Any] = {"event": "message-finish"}
        if current.usage:
            finish["usage"] = current.usage
        if current.metadata:
            finish["metadata"] = current.metadata
        return [*out, finish]

    def close_all(self, error: str | None) -> list[Out]:
        out: list[Out] = []
        for key in list(self.open):
            out.extend(self._wrap(key[0], self._close(key, error), key[1]))
        return out

    @staticmethod
    def _wrap(ns: tuple[str, ...], datas: list[dict[str, Any]], message_id: str) -> list[Out]:
        for data in datas:
            if data["event"] != "message-start":
                data["message_id"] = message_id  # routes the event when messages interleave
        return [("messages", list(ns), data) for data in datas]


def _from_chat_model(meta: Any) -> bool:
    """Whether a recorded ``messages`` chunk is a chat model's output. LangGraph's
    ``messages`` mode also repeats the messages nodes return (with the node's metadata);
    a chat model call's metadata carries LangChain's ``ls_model_type``."""
    return isinstance(meta, dict) and "ls_model_type" in meta


def _interrupts(value: Any) -> list[tuple[str, Any]]:
    """(id, value) of the ``Interrupt`` objects (or their JSON) in ``value``."""
    out: list[tuple[str, Any]] = []
    for item in value if isinstance(value, (list, tuple)) else ():
        ident = getattr(item, "id", None) if not isinstance(item, dict) else item.get("id")
        val = getattr(item, "value", None) if not isinstance(item, dict) else item.get("value")
        if isinstance(ident, str):
            out.append((ident, to_json(val)))
    return out


class RunConverter:
    """One run's recorded chunks -> protocol events. Deterministic: replaying the same
    chunks gives the same events in the same order (positions are derived from it)."""

    def __init__(self, row: RunRow) -> None:
        self.graph_name = row.graph_id.removeprefix("ref:")
        self.messages = _Messages()
        self.asked: set[str] = set()  # interrupt ids already sent as input.requested
        self.subgraphs: dict[tuple[str, ...], str] = {}  # open namespace -> its parent task
        self.seen: set[tuple[str, ...]] = set()

    def start(self) -> list[Out]:
        return [("lifecycle", [], {"event": "running", "graph_name": self.graph_name})]

    def chunk(self, chunk: Any) -> list[Out]:
        ns, mode, data = split_chunk(chunk)
        out = self._discover(ns)
        if mode == "messages":
            msg, meta = data if isinstance(data, (tuple, list)) and len(data) == 2 else (data, {})
            if not _from_chat_model(meta):
                return out  # a message a node returned: state (values, updates), not output
            return out + self.messages.feed(ns, msg, meta)
        if mode == "values":
            if isinstance(data, dict) and "__interrupt__" in data:
                out += self._ask(ns, data["__interrupt__"])
                data = {k: v for k, v in data.items() if k != "__interrupt__"}
                if not data:
                    return out
            return [*out, ("values", list(ns), to_json(data))]
        if mode == "updates":
            for node, values in (data.items() if isinstance(data, dict) else ()):
                if node == "__interrupt__":
                    out += self._ask(ns, values)
                else:
                    out.append(("updates", list(ns), {"node": node, "values": to_json(values)}))
            return out
        if mode == "tasks":
            if isinstance(data, dict) and "result" in data:
                out += self._task_result(ns, data)
            return [*out, ("tasks", list(ns), to_json(data))]
        if mode == "custom":
            # The writer's payload as is: `{"name": ..., ...}` feeds `thread.extensions[name]`.
            return [*out, ("custom", list(ns), to_json(data))]
        if mode == "tools":
            return [*out, ("tools", list(ns), to_json(data))]
        if mode == "checkpoints":
            return [*out, ("checkpoints", list(ns), _checkpoint(data))]
        return out  # debug / events: not part of the protocol

    def finish(self, row: RunRow) -> list[Out]:
        if row.status == "success":
            status, error = "completed", None
        elif row.status == "interrupted" and not row.error:
            status, error = "interrupted", None  # interrupt(): waits for input.respond
        else:  # failed, timed out or stopped on request
            status, error = "failed", error_text(row)
        out = self.messages.close_all(error)
        for ns in sorted(self.subgraphs, key=len, reverse=True):
            out.append(("lifecycle", list(ns), {"event": status,
                                                "graph_name": ns[-1].split(":")[0]}))
        self.subgraphs.clear()
        root: dict[str, Any] = {"event": status, "graph_name": self.graph_name}
        if error is not None:
            root["error"] = error
        return [*out, ("lifecycle", [], root)]

    def _ask(self, ns: tuple[str, ...], interrupts: Any) -> list[Out]:
        out: list[Out] = []
        for ident, value in _interrupts(interrupts):
            if ident not in self.asked:
                self.asked.add(ident)
                # `payload` is the protocol's field, `value` the one the Python SDK reads.
                out.append(("input.requested", list(ns),
                            {"interrupt_id": ident, "payload": value, "value": value}))
        return out

    def _discover(self, ns: tuple[str, ...]) -> list[Out]:
        out: list[Out] = []
        for depth in range(1, len(ns) + 1):
            prefix = ns[:depth]
            if prefix in self.seen:
                continue
            self.seen.add(prefix)
            name, _, trigger = prefix[-1].partition(":")
            if trigger:
                self.subgraphs[prefix] = trigger
                out.append(("lifecycle", list(prefix), {"event": "started", "graph_name": name,
                                                        "trigger_call_id": trigger}))
        return out

    def _task_result(self, ns: tuple[str, ...], data: dict[str, Any]) -> list[Out]:
        out: list[Out] = []
        for child, trigger in list(self.subgraphs.items()):
            if child[:-1] == ns and trigger == data.get("id"):
                del self.subgraphs[child]
                info: dict[str, Any] = {"event": "completed", "graph_name": child[-1].split(":")[0]}
                if data.get("interrupts"):
                    info["event"] = "interrupted"
                elif data.get("error"):
                    info.update(event="failed", error=str(data["error"]))
                out.append(("lifecycle", list(child), info))
        return out


def _checkpoint(data: Any) -> Any:
    if not isinstance(data, dict):
        return to_json(data)
    conf = (data.get("config") or {}).get("configurable") or {}
    parent = (data.get("parent_config") or {}).get("configurable") or {}
    meta = data.get("metadata") or {}
    out = {"id": conf.get("checkpoint_id"), "step": meta.get("step"), "source": meta.get("source")}
    if parent.get("checkpoint_id"):
        out["parent_id"] = parent["checkpoint_id"]
    return to_json(out)
