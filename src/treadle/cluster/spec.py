"""What a queued run asks for: :class:`RunSpec`, and its encoding in the run's payload.

A run is queued by the HTTP API (``treadle.server.run_service``), by a cron, or by
``runtime="distributed"`` (``treadle.cluster.client``); each builds a RunSpec and hands
it to :func:`treadle.cluster.submit.submit`. Workers, the SSE stream and the run's JSON
read it back with :meth:`RunSpec.decode`.

The payload is a versioned mapping (key ``v``) encoded with the run codec. Version 1 has
the same keys as the unversioned mapping written before it, so both read the same way: a
run queued before an upgrade still runs after it. A version this code does not know is a
:class:`~treadle.errors.RunSpecVersionError` that says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from treadle.cluster.codec import decode, encode
from treadle.errors import RunSpecVersionError

__all__ = ["VERSION", "RunSpec"]

#: The payload format this code writes; it reads this one and the unversioned one before it.
VERSION = 1
_VERSION_KEY = "v"
_TRACE_KEY = "trace"  # treadle.tracing.TRACE_KEY: the W3C context of the span that queued it


@dataclass(frozen=True)
class RunSpec:
    """One run's request, as queued. Fields the caller leaves out stay None."""

    input: Any = None
    #: A LangGraph ``Command`` as a mapping (``resume``, ``update``, ``goto``).
    command: Mapping[str, Any] | None = None
    #: The run config (``configurable``, ``metadata``, ...), as the graph gets it.
    config: Mapping[str, Any] = field(default_factory=dict)
    #: Keyword arguments of the graph call (``stream_mode``, ``subgraphs``, ``context``,
    #: ``interrupt_before`` / ``_after``, ``durability``).
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    assistant_id: str | None = None
    multitask_strategy: str | None = None
    #: POSTed the run's record when it ends (HTTP API runs).
    webhook: str | None = None
    #: ``"delete"``: delete the run's thread once it ends (stateless runs).
    on_completion: str | None = None
    #: The thread's record (status, values, interrupts) follows the run (HTTP API threads).
    thread_record: bool = False
    #: The stream modes the API client asked for (``kwargs`` has the engine's).
    stream_mode: list[str] | None = None
    context: Mapping[str, Any] | None = None
    interrupt_before: Any = None
    interrupt_after: Any = None
    #: The trace context of the span that queued the run (every attempt is its child).
    trace: Mapping[str, str] | None = None

    # --- the payload ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The payload mapping (without its version): the keys the run's JSON shows."""
        doc = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        doc[_TRACE_KEY] = doc.pop("trace")
        return doc

    def encode(self) -> bytes:
        return encode({_VERSION_KEY: VERSION, **self.to_dict()})

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RunSpec:
        """The spec of a payload mapping (versioned or not); unknown keys are ignored."""
        version = doc.get(_VERSION_KEY, 0)
        if version not in (0, VERSION):
            raise RunSpecVersionError(
                f"the run was queued in payload format version {version!r}, and this treadle "
                f"reads versions 0 to {VERSION}: run it with the treadle version that queued "
                "it (or a newer one)")
        names = {f.name for f in dataclasses.fields(cls)} - {"trace"}
        values = {k: v for k, v in doc.items() if k in names and v is not None}
        values["thread_record"] = bool(doc.get("thread_record"))
        return cls(**values, trace=doc.get(_TRACE_KEY))

    @classmethod
    def decode(cls, blob: bytes) -> RunSpec:
        """The spec of a run's payload; RunSpecVersionError for a format it cannot read,
        InputError (a TypeError, ValueError from the codec) for one that is not a spec."""
        doc = decode(blob)
        if not isinstance(doc, Mapping):
            raise RunSpecVersionError(
                f"the run's payload is a {type(doc).__name__}, not a run spec")
        return cls.from_dict(doc)

    @classmethod
    def read(cls, blob: bytes) -> RunSpec | None:
        """The spec of a run's payload, or None when it cannot be read (for showing a
        run queued by something else: its JSON, its stream options)."""
        try:
            return cls.decode(blob)
        except Exception:  # noqa: BLE001 - a run queued by something else
            return None
