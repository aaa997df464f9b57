"""langgraph.json ``store.index`` as a :class:`~treadle.store.vectors.SemanticIndex`.

``embed`` names the embedder: ``"provider:model"`` (LangChain's ``init_embeddings``, through
LangGraph's ``ensure_embeddings``; needs the ``langchain`` package and the provider's), or
``"./file.py:attr"`` / ``"module:attr"``: a LangChain ``Embeddings`` object or a function
``list[str] -> list[list[float]]``, sync or async. Every problem is one ConfigError line at
start-up, before anything is served.
"""

from __future__ import annotations

import importlib
from typing import Any

from treadle.errors import ConfigError, TreadleError
from treadle.store.vectors import SemanticIndex

__all__ = ["load_index"]


def load_index(spec: dict[str, Any] | None, source: str = "langgraph.json", *,
               encrypted: bool = False) -> SemanticIndex | None:
    """The index ``spec`` (``store.index``, its file paths already absolute) describes,
    or None without one; ConfigError saying what to fix."""
    if spec is None:
        return None
    if encrypted:
        raise ConfigError(f'{source}: "store.index" cannot be used with encryption at rest '
                          "(stored vectors reveal the text they embed): remove one of them")
    dims = spec.get("dims")
    if isinstance(dims, bool) or not isinstance(dims, int) or dims < 1:
        raise ConfigError(f'{source}: "store.index.dims" must be a whole number above 0 '
                          f"(the embedder's vector size), got {dims!r}")
    embed = spec.get("embed")
    if not isinstance(embed, str) or ":" not in embed:
        raise ConfigError(f'{source}: "store.index.embed" must be "provider:model", '
                          f'"./file.py:attr" or "module:attr", got {embed!r}')
    fields = spec.get("fields")
    if fields is None:
        fields = ["$"]
    if not isinstance(fields, list) or not fields or not all(
            isinstance(f, str) and f for f in fields):
        raise ConfigError(f'{source}: "store.index.fields" must be a list of JSON paths '
                          f'(e.g. ["$"] or ["text", "tags[*]"]), got {fields!r}')
    from langgraph.store.base import ensure_embeddings, tokenize_path

    for field in fields:
        try:
            field == "$" or tokenize_path(field)
        except (ValueError, IndexError) as exc:
            raise ConfigError(f'{source}: "store.index.fields" holds a bad path '
                              f"{field!r}: {exc}") from exc
    try:
        embeddings = ensure_embeddings(_embedder(embed, source))
    except ConfigError:
        raise
    except Exception as exc:  # an embedder is user code: any failure is a config problem
        raise ConfigError(f'{source}: "store.index.embed" {embed!r} cannot be loaded: '
                          f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    return SemanticIndex(dims, embeddings, tuple(fields))


def _embedder(embed: str, source: str) -> Any:
    """What ``embed`` names: the object of a file or module attribute, else the string
    (a "provider:model" for ``ensure_embeddings``)."""
    target, _, attr = embed.rpartition(":")
    if target.endswith(".py") or "/" in target:
        from treadle.graphs.refs import load_object

        try:
            return load_object(embed)
        except TreadleError as exc:
            raise ConfigError(f'{source}: "store.index.embed" {embed!r}: {exc}') from exc
    try:
        module = importlib.import_module(target)
    except ImportError:
        return embed
    return getattr(module, attr, embed)
