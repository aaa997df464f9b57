"""Semantic search in the memory store: langgraph.json ``store.index``.

An item put while the store has an index gets one vector per text found at its fields
(``store.index.fields``, JSON paths as LangGraph reads them, default ``["$"]``: the whole
value; a put's own ``index`` list replaces them, ``index=False`` indexes nothing). The
vectors live in ``treadle_item_vectors`` beside the item, replaced by each put and deleted
with the item (a delete or a TTL sweep). A search with a ``query`` ranks the items that
match its namespace and filter by the cosine similarity of the query's vector with the
item's closest vector (the item's ``score``), best first; items without vectors follow,
without a score, most recently updated first; ``limit`` and ``offset`` page the result.

Ranking is exact cosine over every candidate row: in SQL by ``sqlite-vec`` on a SQLite
store whose connections could load it (treadle.store.items), else here, in Python
(PostgreSQL's ``pgvector`` is not used): see docs/operations.md for the rates these scan at
and hence the scale they suit.
"""

from __future__ import annotations

import math
import operator
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from langgraph.store.base import get_text_at_path, tokenize_path

from treadle.errors import InputError

__all__ = ["SemanticIndex", "VectorRow", "cosine", "decode", "encode", "rank", "rank_scored"]

VectorRow = tuple[str, int, bytes]  # (field, n, embedding bytes)


def encode(vector: Sequence[float]) -> bytes:
    """A vector as stored: scaled to unit length (a zero vector stays zero), little-endian
    float32. Unit length makes a cosine one dot product (:func:`rank`)."""
    norm = math.sqrt(sum(map(operator.mul, vector, vector)))
    packed = array("f", [x / norm for x in vector] if norm else vector)
    if sys.byteorder != "little":  # pragma: no cover - big-endian hosts
        packed.byteswap()
    return packed.tobytes()


def decode(data: bytes) -> array[float]:
    packed = array("f")
    packed.frombytes(bytes(data))
    if sys.byteorder != "little":  # pragma: no cover
        packed.byteswap()
    return packed


def cosine(query: Sequence[float], query_norm: float, vector: Sequence[float]) -> float:
    """The cosine similarity of ``query`` (of norm ``query_norm``) and ``vector``."""
    dot = sum(map(operator.mul, query, vector))
    norm = math.sqrt(sum(map(operator.mul, vector, vector)))
    return dot / (query_norm * norm) if query_norm and norm else 0.0


def rank(query: Sequence[float], rows: Sequence[tuple[Any, bytes | None]]
         ) -> list[tuple[Any, float | None]]:
    """``(item, embedding)`` rows (an item once per vector, in the order wanted among
    unscored items) as ``(item, score)``: each item once, scored ones best first."""
    norm = math.sqrt(sum(map(operator.mul, query, query)))
    # stored vectors have unit length (encode): the cosine is the dot product over |query|
    return rank_scored([
        (item, None if data is None
         else sum(map(operator.mul, query, decode(data))) / norm if norm else 0.0)
        for item, data in rows])


def rank_scored(rows: Sequence[tuple[Any, float | None]]) -> list[tuple[Any, float | None]]:
    """``(item, score)`` rows (an item once per vector; None: no vector) as :func:`rank`
    gives them: each item once with its best score, scored ones best first."""
    best: dict[int, tuple[Any, float | None]] = {}
    order: list[int] = []
    for item, score in rows:
        ident = id(item)
        if ident not in best:
            best[ident] = (item, None)
            order.append(ident)
        if score is None:
            continue
        old = best[ident][1]
        if old is None or score > old:
            best[ident] = (item, score)
    scored = sorted((best[i] for i in order if best[i][1] is not None),
                    key=lambda pair: -(pair[1] or 0.0))
    return scored + [best[i] for i in order if best[i][1] is None]


@dataclass(frozen=True)
class SemanticIndex:
    """A checked ``store.index``: ``embeddings`` is a LangChain ``Embeddings`` (LangGraph's
    ``ensure_embeddings`` of what ``embed`` names), ``fields`` JSON paths."""

    dims: int
    embeddings: Any
    fields: tuple[str, ...] = ("$",)

    def texts(self, value: Mapping[str, Any], index: Literal[False] | Sequence[str] | None
              ) -> list[tuple[str, int, str]]:
        """The ``(field, n, text)`` to embed for a put of ``value`` with ``index``."""
        if index is False:
            return []
        fields = self.fields if index is None else tuple(index)
        found: list[tuple[str, int, str]] = []
        for field in fields:
            if not isinstance(field, str):
                raise InputError(f"index fields are JSON paths (strings), not {field!r}")
            try:
                path = field if field == "$" else tokenize_path(field)
                texts = get_text_at_path(value, path)
            except (ValueError, IndexError, TypeError) as exc:
                raise InputError(f"bad index field {field!r}: {exc}") from exc
            found += [(field, n, text) for n, text in enumerate(texts)]
        return found

    def check(self, vectors: Sequence[Sequence[float]], wanted: int) -> list[list[float]]:
        """The embedder's answer, checked: ``wanted`` vectors of ``dims`` finite numbers."""
        got = [list(map(float, v)) for v in vectors]
        if len(got) != wanted:
            raise InputError(f"the store.index embedder returned {len(got)} vectors for "
                             f"{wanted} texts")
        for v in got:
            if len(v) != self.dims:
                raise InputError(f"the store.index embedder returned a vector of {len(v)} "
                                 f"numbers; store.index.dims is {self.dims}")
            if not all(map(math.isfinite, v)):
                raise InputError("the store.index embedder returned a vector that is not finite")
        return got
