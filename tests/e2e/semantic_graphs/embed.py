"""A deterministic test embedder: hashed bag of words (64 dims), no model, no network.

Texts sharing words have a positive cosine; texts sharing none have 0. ``aembed`` is the
same as an async function (langgraph.json may name either)."""

from __future__ import annotations

import hashlib
import re

DIMS = 64


def _vector(text: str) -> list[float]:
    v = [0.0] * DIMS
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        h = hashlib.blake2b(word.encode(), digest_size=4).digest()
        v[int.from_bytes(h, "big") % DIMS] += 1.0
    return v


def embed(texts: list[str]) -> list[list[float]]:
    return [_vector(t) for t in texts]


async def aembed(texts: list[str]) -> list[list[float]]:
    return embed(texts)
