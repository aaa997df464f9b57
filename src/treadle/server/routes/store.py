"""The store API (``/store/*``): LangGraph's long-term memory items, as ``langgraph-sdk``
calls it (``client.store.put_item`` / ``get_item`` / ``delete_item`` / ``search_items`` /
``list_namespaces``).

Everything goes through :class:`~treadle.store.memory.TreadleStore`, so HTTP clients and graph
nodes see the same items with the same rules. Namespaces travel as lists of labels, except
in ``GET /store/items`` where the SDK joins them with ``.``. TTLs are in minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from langgraph.store.base import InvalidNamespaceError, Item
from pydantic import BaseModel, Field, field_validator

from treadle.errors import InputError
from treadle.server.context import get_memory
from treadle.server.limits import MAX_NAMESPACE_LABELS, MAX_STORE_PATH_BYTES, MAX_TTL_MINUTES
from treadle.store.memory import TreadleStore

__all__ = ["router"]

router = APIRouter(tags=["store"])
StoreDep = Annotated[TreadleStore, Depends(get_memory)]  # with langgraph.json's store.ttl


def _labels(labels: list[str] | None) -> list[str] | None:
    for label in labels or ():
        if not label or "." in label:
            raise ValueError(f"namespace labels are non-empty strings without '.', got {label!r}")
    if len(labels or ()) > MAX_NAMESPACE_LABELS:
        raise ValueError(f"at most {MAX_NAMESPACE_LABELS} namespace labels")
    if len(".".join(labels or ()).encode("utf-8", "surrogatepass")) > MAX_STORE_PATH_BYTES:
        raise ValueError(f"the namespace (labels joined by '.') is at most "
                         f"{MAX_STORE_PATH_BYTES} bytes of UTF-8")
    return labels


def _key(key: str) -> str:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_STORE_PATH_BYTES:
        raise ValueError(f"the key is at most {MAX_STORE_PATH_BYTES} bytes of UTF-8")
    return key


Ttl = Annotated[float, Field(gt=0, le=MAX_TTL_MINUTES, description="Minutes until it expires.")]


class PutItem(BaseModel):
    namespace: list[str] = Field(min_length=1, description="The item's namespace, as labels.")
    key: str = Field(min_length=1)
    value: dict[str, Any] = Field(description="The item: a JSON object.")
    index: Literal[False] | list[str] | None = Field(
        default=None, description="Accepted for compatibility; treadle has no vector index.")
    ttl: Ttl | None = None

    check_namespace = field_validator("namespace")(_labels)
    check_key = field_validator("key")(_key)


class DeleteItem(BaseModel):
    namespace: list[str] = Field(min_length=1)
    key: str = Field(min_length=1)

    check_namespace = field_validator("namespace")(_labels)
    check_key = field_validator("key")(_key)


class SearchItems(BaseModel):
    namespace_prefix: list[str] = Field(default_factory=list)
    filter: dict[str, Any] | None = Field(
        default=None, description="Top-level keys of the value: a value, or operators "
        "($eq, $ne, $gt, $gte, $lt, $lte).")
    limit: int = Field(default=10, ge=0, le=10_000)
    offset: int = Field(default=0, ge=0, le=2**63 - 1)
    query: str | None = Field(default=None, description="Ignored: treadle has no vector index.")
    refresh_ttl: bool | None = None

    check_namespace = field_validator("namespace_prefix")(_labels)


class ListNamespaces(BaseModel):
    prefix: list[str] | None = Field(default=None, description="'*' matches any one label.")
    suffix: list[str] | None = Field(default=None, description="'*' matches any one label.")
    max_depth: int | None = Field(default=None, ge=1, le=1_000)
    limit: int = Field(default=100, ge=0, le=10_000)
    offset: int = Field(default=0, ge=0, le=2**63 - 1)

    check_paths = field_validator("prefix", "suffix")(_labels)


class StoreItem(BaseModel):
    namespace: list[str]
    key: str
    value: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class FoundItem(StoreItem):
    score: float | None = None


class FoundItems(BaseModel):
    items: list[FoundItem]


class Namespaces(BaseModel):
    namespaces: list[list[str]]


@contextmanager
def _unprocessable() -> Iterator[None]:
    """Bad input found by the store (a namespace, value or filter) is a 422."""
    try:
        yield
    except (InputError, InvalidNamespaceError) as exc:
        raise HTTPException(422, str(exc)) from exc


def _out(item: Item) -> dict[str, Any]:
    return {"namespace": list(item.namespace), "key": item.key, "value": item.value,
            "created_at": item.created_at, "updated_at": item.updated_at}


@router.put("/store/items", status_code=204, response_class=Response,
            summary="Store or update an item")
async def put_item(body: PutItem, store: StoreDep) -> Response:
    with _unprocessable():
        await store.aput(tuple(body.namespace), body.key, body.value,
                                       body.index, ttl=body.ttl)
    return Response(status_code=204)


@router.get("/store/items", response_model=StoreItem | None, summary="Get an item",
            description="The item, or `null` when the namespace holds no such key "
                        "(as LangGraph Platform answers).")
async def get_item(
    store: StoreDep,
    key: Annotated[str, Query(min_length=1)],
    namespace: Annotated[str, Query(description="The labels joined by '.'")],
    refresh_ttl: bool | None = None,
) -> dict[str, Any] | None:
    labels = namespace.split(".") if namespace else []
    if not labels or not all(labels):
        raise HTTPException(422, f"namespace {namespace!r} must be labels joined by '.', "
                                 "none of them empty")
    try:
        _labels(labels)
        _key(key)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    with _unprocessable():
        item = await store.aget(tuple(labels), key, refresh_ttl=refresh_ttl)
    return None if item is None else _out(item)


@router.delete("/store/items", status_code=204, response_class=Response,
               summary="Delete an item")
async def delete_item(body: DeleteItem, store: StoreDep) -> Response:
    with _unprocessable():
        await store.adelete(tuple(body.namespace), body.key)
    return Response(status_code=204)


@router.post("/store/items/search", response_model=FoundItems, summary="Search items")
async def search_items(body: SearchItems, store: StoreDep) -> dict[str, Any]:
    with _unprocessable():
        found = await store.asearch(
            tuple(body.namespace_prefix), query=body.query, filter=body.filter,
            limit=body.limit, offset=body.offset, refresh_ttl=body.refresh_ttl)
    return {"items": [{**_out(i), "score": i.score} for i in found]}


@router.post("/store/namespaces", response_model=Namespaces, summary="List namespaces")
async def list_namespaces(body: ListNamespaces, store: StoreDep) -> dict[str, Any]:
    with _unprocessable():
        found = await store.alist_namespaces(
            prefix=tuple(body.prefix) if body.prefix else None,
            suffix=tuple(body.suffix) if body.suffix else None,
            max_depth=body.max_depth, limit=body.limit, offset=body.offset)
    return {"namespaces": [list(ns) for ns in found]}
