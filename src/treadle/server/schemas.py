"""Request bodies of the HTTP API, as pydantic models.

They give FastAPI the OpenAPI document and give bad input its 422 naming the field.
Field names and types follow what ``langgraph-sdk`` sends; fields the SDK may send
that treadle does not act on are accepted and listed in docs/api.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from treadle.server.limits import MAX_ID_LENGTH
from treadle.server.run_config import check_client_config

__all__ = [
    "MAX_OFFSET", "AssistantCreate", "AssistantPatch", "AssistantSearch", "AssistantVersionsSearch",
    "CountBody", "CronCreate", "CronPatch", "CronSearch", "LatestVersion", "RunBatchItem",
    "RunCancelMany", "RunCreate", "ThreadCopy", "ThreadCreate", "ThreadHistory",
    "ThreadPatch", "ThreadPrune", "ThreadSearch", "ThreadStateCheckpoint", "ThreadStateUpdate",
]

StreamModeName = Literal["values", "messages", "messages-tuple", "updates", "events", "tasks",
                         "checkpoints", "debug", "custom", "tools", "lifecycle"]
MultitaskStrategy = Literal["reject", "interrupt", "rollback", "enqueue"]
SortOrder = Literal["asc", "desc"]
Json = dict[str, Any]
# The largest integer SQLite and PostgreSQL bind (a signed 64-bit one): a larger offset
# is a 422 here rather than an overflow in the driver. Versions are 32-bit columns.
MAX_OFFSET = 2**63 - 1
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET)]
# An id a request gives a new thread or assistant (treadle.server.limits); ids that only
# refer to something take any length, so a longer one stored earlier stays reachable.
NewId = Annotated[str, Field(max_length=MAX_ID_LENGTH)]


def _webhook(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("webhook must be an http:// or https:// URL")
    return url


WebhookUrl = Annotated[str, AfterValidator(_webhook)]


def _runnable_config(config: Json) -> Json:
    """The parts of a config treadle merges itself must be objects (the rest the graph checks);
    no key that steers treadle itself (a 400, see treadle.server.run_config)."""
    check_client_config(config)
    for key in ("configurable", "metadata"):
        if config.get(key) is not None and not isinstance(config[key], dict):
            raise ValueError(f"config.{key} must be an object, not {config[key]!r}")
    return config


_CHECKPOINT_FIELDS = {"thread_id": str, "checkpoint_ns": str, "checkpoint_id": str,
                      "checkpoint_map": dict}


def _checkpoint(checkpoint: Json) -> Json:
    """A checkpoint reference ({checkpoint_id, checkpoint_ns, ...}, or a config holding one
    under ``configurable``) whose known fields have the types LangGraph reads them as, and
    no key that steers treadle (a 400: state reads and updates pass it on as a config)."""
    check_client_config(checkpoint, "checkpoint")
    inner = checkpoint.get("configurable", checkpoint)
    if not isinstance(inner, dict):
        raise ValueError(f"configurable must be an object, not {inner!r}")
    for key, kind in _CHECKPOINT_FIELDS.items():
        if inner.get(key) is not None and not isinstance(inner[key], kind):
            what = "a string" if kind is str else "an object"
            raise ValueError(f"{key} must be {what}, not {inner[key]!r}")
    return checkpoint


RunnableConfig = Annotated[Json, AfterValidator(_runnable_config)]
Checkpoint = Annotated[Json, AfterValidator(_checkpoint)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class AssistantCreate(_Body):
    graph_id: str = Field(min_length=1)
    assistant_id: NewId | None = None
    config: RunnableConfig | None = None
    context: Json | None = None
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    name: str | None = None
    description: str | None = None


class AssistantPatch(_Body):
    graph_id: str | None = Field(default=None, min_length=1)
    config: RunnableConfig | None = None
    context: Json | None = None
    metadata: Json | None = None
    name: str | None = None
    description: str | None = None


class AssistantSearch(_Body):
    metadata: Json | None = None
    graph_id: str | None = None
    name: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: Offset = 0
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = None
    sort_order: SortOrder | None = None
    select: list[str] | None = None


class CountBody(_Body):
    metadata: Json | None = None
    graph_id: str | None = None
    name: str | None = None
    values: Json | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    assistant_id: str | None = None
    thread_id: str | None = None


class AssistantVersionsSearch(_Body):
    metadata: Json | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: Offset = 0


class LatestVersion(_Body):
    version: int = Field(ge=1, le=2**31 - 1)


class _SuperstepUpdate(_Body):
    values: Any = None
    command: Json | None = None
    as_node: str


class _Superstep(_Body):
    updates: list[_SuperstepUpdate]


class ThreadCreate(_Body):
    thread_id: NewId | None = None
    metadata: Json | None = None
    if_exists: Literal["raise", "do_nothing"] = "raise"
    supersteps: list[_Superstep] | None = None
    graph_id: str | None = None
    ttl: Any = None


class ThreadPatch(_Body):
    metadata: Json = Field(default_factory=dict)
    ttl: Any = None


class ThreadSearch(_Body):
    metadata: Json | None = None
    values: Json | None = None
    ids: list[str] | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: Offset = 0
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] | None = None
    sort_order: SortOrder | None = None
    select: list[str] | None = None


class ThreadCopy(_Body):
    pass


class ThreadPrune(_Body):
    thread_ids: list[str]
    strategy: Literal["delete", "keep_latest"] = "delete"


class ThreadStateUpdate(_Body):
    values: Any = None
    as_node: str | None = None
    checkpoint: Checkpoint | None = None
    checkpoint_id: str | None = None


class ThreadStateCheckpoint(_Body):
    checkpoint: Checkpoint
    subgraphs: bool = False


class ThreadHistory(_Body):
    limit: int = Field(default=10, ge=1, le=1000)
    before: str | Json | None = None
    metadata: Json | None = None
    checkpoint: Checkpoint | None = None

    @field_validator("before")
    @classmethod
    def _before(cls, before: str | Json | None) -> str | Json | None:
        return _checkpoint(before) if isinstance(before, dict) else before


class RunCreate(_Body):
    assistant_id: str = Field(min_length=1)
    input: Any = None
    command: Json | None = None
    config: RunnableConfig | None = None
    context: Json | None = None
    metadata: Json | None = None
    stream_mode: StreamModeName | list[StreamModeName] | None = None
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    webhook: WebhookUrl | None = None
    checkpoint: Checkpoint | None = None
    checkpoint_id: str | None = None
    multitask_strategy: MultitaskStrategy | None = None
    if_not_exists: Literal["create", "reject"] | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    after_seconds: float | None = Field(default=None, ge=0)
    durability: Literal["sync", "async", "exit"] | None = None
    feedback_keys: list[str] | None = None


class RunBatchItem(RunCreate):
    pass


class RunCancelMany(_Body):
    thread_id: str | None = None
    run_ids: list[str] | None = None
    status: Literal["pending", "running", "all"] | None = None
    action: Literal["interrupt", "rollback"] = "interrupt"


class CronCreate(RunCreate):
    schedule: str = Field(min_length=1)
    end_time: str | None = None
    timezone: str | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    enabled: bool = True


class CronPatch(_Body):
    schedule: str | None = Field(default=None, min_length=1)
    end_time: str | None = None
    input: Any = None
    metadata: Json | None = None
    config: RunnableConfig | None = None
    context: Json | None = None
    webhook: WebhookUrl | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    enabled: bool | None = None
    stream_mode: StreamModeName | list[StreamModeName] | None = None
    timezone: str | None = None


class CronSearch(_Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: Offset = 0
    sort_by: Literal["cron_id", "assistant_id", "thread_id", "next_run_date", "end_time",
                     "created_at", "updated_at"] | None = None
    sort_order: SortOrder | None = None
    select: list[str] | None = None
