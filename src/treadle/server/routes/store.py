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
from treadle.server.authz_deps import Authz, AuthzDep, strip_prefix
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
        default=None, description="With langgraph.json store.index: false = not indexed, a "
        "list = the JSON paths to embed (default: store.index.fields); else ignored.")
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
    query: str | None = Field(default=None, description="With langgraph.json store.index: rank "
                              "by cosine similarity (each item's score); else ignored.")
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


def _out(item: Item, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"namespace": _strip(item.namespace, prefix), "key": item.key, "value": item.value,
            "created_at": item.created_at, "updated_at": item.updated_at}


def _strip(namespace: tuple[str, ...], prefix: tuple[str, ...]) -> list[str]:
    """``namespace`` without the labels the store handler put in front of the client's."""
    if prefix and namespace[:len(prefix)] == prefix:
        return list(namespace[len(prefix):])
    return list(namespace)


async def _namespace(authz: Authz, action: str, value: dict[str, Any]
                     ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Authorize a store ``action`` (403 if denied): the namespace to use (as the handler
    rewrote it) and the labels it added in front (stripped from what is returned)."""
    given = value["namespace"]
    await authz.store(action, value)
    namespace = tuple(value["namespace"]) if value["namespace"] is not None else ()
    return namespace, strip_prefix(given, value["namespace"])


@router.put("/store/items", status_code=204, response_class=Response,
            summary="Store or update an item")
async def put_item(body: PutItem, store: StoreDep, authz: AuthzDep) -> Response:
    value: dict[str, Any] = {"namespace": tuple(body.namespace), "key": body.key,
                             "value": body.value, "index": body.index}
    namespace, _ = await _namespace(authz, "put", value)
    with _unprocessable():
        await store.aput(namespace, value["key"], value["value"], body.index, ttl=body.ttl)
    return Response(status_code=204)


@router.get("/store/items", response_model=StoreItem | None, summary="Get an item",
            description="The item, or `null` when the namespace holds no such key "
                        "(as LangGraph Platform answers).")
async def get_item(
    store: StoreDep,
    authz: AuthzDep,
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
    value: dict[str, Any] = {"namespace": tuple(labels), "key": key}
    found, prefix = await _namespace(authz, "get", value)
    with _unprocessable():
        item = await store.aget(found, value["key"], refresh_ttl=refresh_ttl)
    return None if item is None else _out(item, prefix)


@router.delete("/store/items", status_code=204, response_class=Response,
               summary="Delete an item")
async def delete_item(body: DeleteItem, store: StoreDep, authz: AuthzDep) -> Response:
    value: dict[str, Any] = {"namespace": tuple(body.namespace), "key": body.key}
    namespace, _ = await _namespace(authz, "delete", value)
    with _unprocessable():
        await store.adelete(namespace, value["key"])
    return Response(status_code=204)


@router.post("/store/items/search", response_model=FoundItems, summary="Search items")
async def search_items(body: SearchItems, store: StoreDep, authz: AuthzDep) -> dict[str, Any]:
    value: dict[str, Any] = {"namespace": tuple(body.namespace_prefix), "filter": body.filter,
                             "limit": body.limit, "offset": body.offset, "query": body.query}
    namespace, prefix = await _namespace(authz, "search", value)
    with _unprocessable():
        found = await store.asearch(
            namespace, query=value["query"], filter=value["filter"],
            limit=value["limit"], offset=value["offset"], refresh_ttl=body.refresh_ttl)
    return {"items": [{**_out(i, prefix), "score": i.score} for i in found]}


@router.post("/store/namespaces", response_model=Namespaces, summary="List namespaces")
async def list_namespaces(body: ListNamespaces, store: StoreDep, authz: AuthzDep) -> dict[str, Any]:
    value: dict[str, Any] = {
        "namespace": tuple(body.prefix) if body.prefix else None,
        "suffix": tuple(body.suffix) if body.suffix else None, "max_depth": body.max_depth,
        "limit": body.limit, "offset": body.offset}
    namespace, prefix = await _namespace(authz, "list_namespaces", value)
    depth = value["max_depth"]
    if depth is not None and prefix:  # the depth the client meant, below the added labels
        depth += len(prefix)
    with _unprocessable():
        found = await store.alist_namespaces(
            prefix=namespace or None,
            suffix=tuple(value["suffix"]) if value["suffix"] else None,
            max_depth=depth, limit=value["limit"], offset=value["offset"])
    return {"namespaces": [_strip(ns, prefix) for ns in found]}
