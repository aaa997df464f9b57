"""Chunked list values: how a long list channel (``add_messages``, ``operator.add``) is stored
so that a thread's storage grows with what it adds, not with its length times its steps.

A list of at least :data:`MIN_LENGTH` elements is stored as a sequence of chunks, each a run
of consecutive elements serialized on its own and stored once, as a blob row of the same
thread, namespace and channel under a version of its own (``c:`` and a random id); the
channel's value at a version is a small row naming its chunks in order. A version that
appends reuses every chunk of the value it extends and writes one chunk of what it added;
once the small chunks at the end hold :data:`CHUNK` elements they are merged into one. So a
step writes what it added plus 16 bytes per chunk named (an id and a hash), each element is
written about twice in all, and a value names about ``len / CHUNK + CHUNK`` chunks. A value
that is not an extension (a message edited by id, a ``RemoveMessage``) reuses the chunks
before the change and writes the rest anew. A chunk is recognised by the hash of its
serialized (plaintext) bytes, never by object identity, so a mutated element can never be
mistaken for a stored one.

Which chunks exist is known per saver from the last value of each (thread, namespace,
channel) it wrote or read, with the checkpoint that value belongs to; a new version reuses
them only when it is written on that very checkpoint (its parent: LangGraph writes each step
on the checkpoint it just wrote or read), so a chunk is reused only while a checkpoint whose
value names it exists. Otherwise (another process, a restart, a fork from an older checkpoint)
the value is written again in chunks of ``CHUNK``, once.

Row format (``type`` ``chunks/<serde type>``): ``TRC1``, the number of chunks (2 bytes), each
chunk's id (8 bytes), then the serde's bytes of ``{"h": [hash, ...], "t": tail}`` (sealed when
encryption at rest is on; the ids are random and say nothing about the content; ``t`` is
empty as written today). Values written before this format existed are ordinary rows and read
as before.
"""

from __future__ import annotations

import hashlib
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from treadle.errors import StoreDataError

__all__ = ["CHUNK", "CHUNK_PREFIX", "MIN_LENGTH", "TYPE_PREFIX", "Chunk", "ChunkCache", "chunk_ids", "decode", "encode", "referenced",
           "is_chunk_version"]

#: Elements of a full chunk (small chunks at the end are merged into one past this).
CHUNK = 16
#: Shorter lists are stored whole.
MIN_LENGTH = 8
#: Type prefix of a chunked value's row.
TYPE_PREFIX = "chunks/"
#: Version prefix of a chunk's row.
CHUNK_PREFIX = "c:"
_MAGIC = b"TRC1"
_CACHED_CHANNELS = 4096

Dumps = Callable[[Any], tuple[str, bytes]]
Loads = Callable[[tuple[str, bytes]], Any]


def is_chunk_version(version: str) -> bool:
    return version.startswith(CHUNK_PREFIX)


#: One chunk as a cache knows it: hash of its plaintext, its id, its number of elements.
Chunk = tuple[bytes, bytes, int]


class ChunkCache:
    """Per (thread, namespace): the checkpoint this process last wrote or read, and the chunks
    of each chunked channel value at that checkpoint. A new checkpoint reuses them only when it
    is written on that very checkpoint (its parent, which therefore exists; a channel the step
    did not write keeps its value, and so its chunks), so a chunk is never reused once the
    values naming it may have been pruned away."""

    def __init__(self, size: int = _CACHED_CHANNELS) -> None:
        self._known: OrderedDict[tuple[str, str], tuple[str, dict[str, list[Chunk]]]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def chunks(self, thread: tuple[str, str], parent: str | None, channel: str) -> list[Chunk]:
        """The chunks of ``channel``'s value at ``parent``, if that is the checkpoint known."""
        with self._lock:
            found = self._known.get(thread)
            if found is None or parent is None or found[0] != parent:
                return []
            return found[1].get(channel, [])

    def wrote(self, thread: tuple[str, str], parent: str | None, own: str,
              written: dict[str, list[Chunk]]) -> None:
        """Checkpoint ``own`` was written on ``parent`` with ``written`` (channel -> chunks;
        an empty list: the channel's new value is not chunked)."""
        with self._lock:
            found = self._known.get(thread)
            known = dict(found[1]) if found is not None and found[0] == parent else {}
            known.update(written)
            self._remember(thread, own, {ch: c for ch, c in known.items() if c})

    def read(self, thread: tuple[str, str], checkpoint_id: str, known: dict[str, list[Chunk]]) -> None:
        """Checkpoint ``checkpoint_id`` was read; ``known``: its chunked values' chunks."""
        with self._lock:
            self._remember(thread, checkpoint_id, known)

    def _remember(self, thread: tuple[str, str], checkpoint_id: str,
                  known: dict[str, list[Chunk]]) -> None:
        self._known[thread] = (checkpoint_id, known)
        self._known.move_to_end(thread)
        while len(self._known) > self._size:
            self._known.popitem(last=False)


def _digest(kind: str, data: bytes) -> bytes:
    return hashlib.blake2b(kind.encode() + b"\0" + data, digest_size=8).digest()


def encode(value: list[Any], previous: list[Chunk], plain: Dumps,
           seal: Callable[[bytes], bytes], dumps: Dumps
           ) -> tuple[tuple[str, bytes], list[tuple[str, str, bytes]], list[Chunk]]:
    """The row of ``value`` (type, bytes), the new chunk rows it needs (version, type, bytes)
    and its chunks (the next ``previous``). ``previous``: the chunks of the value this one
    most likely extends; each is reused while the same elements serialize to the same bytes.
    ``plain`` serializes without encryption, ``seal`` encrypts serialized bytes (identity
    when off), ``dumps`` is the sealing serializer."""
    chunks: list[Chunk] = []
    new_rows: list[tuple[str, str, bytes]] = []
    pos = 0

    def add(elements: list[Any]) -> None:
        kind, data = plain(elements)
        chunk_id = os.urandom(8)
        new_rows.append((CHUNK_PREFIX + chunk_id.hex(), kind, seal(data)))
        chunks.append((_digest(kind, data), chunk_id, len(elements)))

    for digest, chunk_id, count in previous:
        if pos + count > len(value) or _digest(*plain(value[pos:pos + count])) != digest:
            break
        chunks.append((digest, chunk_id, count))
        pos += count
    # What is new: one chunk per version (the elements it added), merged into a full chunk
    # once the small chunks at the end hold CHUNK elements, so a value names about
    # len / CHUNK + CHUNK chunks and each element is written about twice in all.
    while pos < len(value):
        add(value[pos:pos + CHUNK])
        pos += chunks[-1][2]
    small = 0
    while small < len(chunks) and chunks[-1 - small][2] < CHUNK:
        small += 1
    if small > 1 and sum(c[2] for c in chunks[-small:]) >= CHUNK:
        start = len(value) - sum(c[2] for c in chunks[-small:])
        del chunks[-small:]
        kept = {CHUNK_PREFIX + c[1].hex() for c in chunks}
        new_rows[:] = [row for row in new_rows if row[0] in kept]  # merged away: not written
        add(value[start:])
    kind, data = dumps({"h": [c[0] for c in chunks], "t": []})
    head = _MAGIC + struct.pack(">H", len(chunks)) + b"".join(c[1] for c in chunks)
    return (TYPE_PREFIX + kind, head + data), new_rows, chunks


def chunk_ids(blob: bytes | None) -> list[str]:
    """The versions of the chunk rows a chunked value's row names."""
    if blob is None or blob[:4] != _MAGIC or len(blob) < 6:
        raise StoreDataError("a chunked checkpoint value in the store is damaged (bad header)")
    (count,) = struct.unpack(">H", blob[4:6])
    end = 6 + 8 * count
    if len(blob) < end:
        raise StoreDataError("a chunked checkpoint value in the store is truncated")
    return [CHUNK_PREFIX + blob[i:i + 8].hex() for i in range(6, end, 8)]


def decode(kind: str, blob: bytes, chunks: dict[str, tuple[str, bytes | None]], loads: Loads
           ) -> tuple[list[Any], list[Chunk]]:
    """The list a chunked row holds, from its chunk rows (version -> (type, bytes)), and its
    chunks (for the cache)."""
    versions = chunk_ids(blob)
    body = loads((kind[len(TYPE_PREFIX):], blob[6 + 8 * len(versions):]))
    hashes: list[bytes] = list(body["h"])
    if len(hashes) != len(versions):
        raise StoreDataError("a chunked checkpoint value in the store is damaged (refs differ)")
    out: list[Any] = []
    layout: list[Chunk] = []
    for digest, version in zip(hashes, versions, strict=True):
        found = chunks.get(version)
        if found is None or found[1] is None:
            raise StoreDataError(f"a chunk of a checkpoint value is missing from the store "
                                 f"({version}); the thread's storage was damaged")
        elements = loads((found[0], found[1]))
        out.extend(elements)
        layout.append((digest, bytes.fromhex(version[len(CHUNK_PREFIX):]), len(elements)))
    if body["t"]:  # a tail after the chunks: named by no chunk, so not cached
        out.extend(body["t"])
        layout = []
    return out, layout


def referenced(rows: Iterable[tuple[str, bytes | None]]) -> set[str]:
    """The chunk versions named by chunked rows (type, bytes); other rows name none."""
    out: set[str] = set()
    for kind, blob in rows:
        if kind.startswith(TYPE_PREFIX):
            out.update(chunk_ids(blob))
    return out
