"""``langgraph.json``: reading it, and what treadle does with each of its keys.

Every key of the schema ``langgraph-cli`` validates (0.4.x) is in :data:`KEYS` with its
status, so nothing in the file is silently ignored:

* **honoured**: treadle does what LangGraph Platform does with it;
* **build-only**: only ``langgraph build`` reads it (the image's base, Python, pip, extra
  Dockerfile lines); treadle's image is ``deploy/Dockerfile``, so it changes nothing at run
  time. Start-up lists such keys in one info line;
* **refused**: treadle does not implement it, so ``treadle dev``/``serve``/``worker``/``run``
  and ``treadle deploy k8s`` stop with one :class:`~treadle.errors.ConfigError` line naming
  the key and what to do. A refused key set to ``null`` is taken as absent.

A key the schema does not know is a warning naming it (as ``langgraph validate`` does),
never an error. ``docs/api.md`` shows :func:`keys_markdown`; a test checks they agree.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from treadle.errors import ConfigError
from treadle.langgraph_http import HttpOptions, http_keys, http_options

__all__ = [
    "KEYS", "Checked", "Key", "Loaded", "apply", "auth_ref", "check", "cors_options",
    "dependencies", "graph_descriptions", "graph_refs", "keys_markdown", "load", "parse",
    "path_ref", "read", "read_langgraph_json", "store_ttl", "thread_ttl"
]

log = logging.getLogger("treadle.config")

Status = Literal["honoured", "build-only", "refused"]
Kind = Literal["boolean", "integer", "number", "string", "list of strings", "list of integers",
               "JSON object of strings"]

# langgraph-cli's CorsConfig: the keyword arguments of Starlette's CORSMiddleware.
_CORS: dict[str, Kind] = {
    "allow_origins": "list of strings", "allow_methods": "list of strings",
    "allow_headers": "list of strings", "allow_credentials": "boolean",
    "allow_origin_regex": "string", "expose_headers": "list of strings", "max_age": "integer",
}
_BUILD = "used by `langgraph build` only; treadle's image is deploy/Dockerfile"


@dataclass(frozen=True)
class Key:
    """One key of langgraph.json (dotted; ``*`` stands for any name)."""

    path: str
    status: Status
    note: str  # what treadle does with it, or what to do instead
    children: bool = False  # an object whose own keys are in the table
    kind: Kind | None = None  # the JSON type an honoured key's value must have


KEYS: tuple[Key, ...] = (
    Key("graphs", "honoured", 'the graphs to serve: name -> "path.py:attr" or "module:attr" '
        "(a graph, a compiled graph, or a factory)", children=True),
    Key("graphs.*.path", "honoured", "the graph's reference, as above"),
    Key("graphs.*.description", "honoured", "the description of the graph's default assistant"),
    Key("dependencies", "honoured", "local directories go on sys.path at start-up; the image's "
        "install step (`python -m treadle.deploy.dependencies`) pip-installs the rest"),
    Key("env", "honoured", "an object, or the path of a KEY=VALUE file, set before the graphs "
        "load; variables already set in the environment win"),
    Key("python_version", "build-only", f"{_BUILD} (its PYTHON_IMAGE build argument)"),
    Key("node_version", "build-only", f"{_BUILD}; treadle serves Python graphs only"),
    Key("api_version", "build-only", f"{_BUILD} (it picks a langgraph-api version)"),
    Key("_INTERNAL_docker_tag", "build-only", _BUILD),
    Key("base_image", "build-only", f"{_BUILD} (its PYTHON_IMAGE build argument)"),
    Key("image_distro", "build-only", f"{_BUILD} (its PYTHON_IMAGE build argument)"),
    Key("pip_config_file", "build-only", f"{_BUILD}; its install step takes pip options "
        "after `--`"),
    Key("pip_installer", "build-only", f"{_BUILD}, which installs with pip"),
    Key("keep_pkg_tools", "build-only", _BUILD),
    Key("dockerfile_lines", "build-only", f"{_BUILD}: add the lines to your copy of it"),
    Key("source", "build-only", f"{_BUILD}, which installs `dependencies` only: list your "
        'project there (".")'),
    Key("project_root", "refused", 'no longer supported by langgraph-cli: use "dependencies"'),
    Key("package", "refused", 'no longer supported by langgraph-cli: use "dependencies"'),
    Key("auth", "honoured", "a langgraph_sdk.Auth guarding every route but /ok, /info and "
        "/metrics (docs/security.md)", children=True),
    Key("auth.path", "honoured", '"path.py:attr" of the langgraph_sdk.Auth instance',
        kind="string"),
    Key("auth.disable_studio_auth", "honoured", "no effect: treadle has no LangGraph Studio "
        "user that bypasses auth", kind="boolean"),
    Key("auth.openapi", "honoured", "no effect: /openapi.json does not describe the auth "
        "scheme"),
    Key("auth.cache", "honoured", "no effect: treadle calls @auth.authenticate on every "
        "request (cache in your handler if it is slow)"),
    Key("encryption", "honoured", '{"path": "path.py:attr"} of a langgraph_sdk Encryption: its '
        "blob handlers encrypt checkpoints, task writes, runs, events and items at rest, its "
        "JSON handlers metadata (the API and every worker reading this file)"),
    Key("priority", "honoured", '{"path": "path.py:attr"} of a langgraph_sdk Priority: its '
        "@priority.assign settles a thread's priority and fairness_group at its first run "
        "(fairness_group too is honoured: claims take turns between groups)"),
    Key("webhooks", "honoured", "where run webhooks may go, checked when the run is created "
        "and against the resolved address when sent (docs/security.md); without it: any "
        "http(s) URL but loopback, link-local and other special addresses", children=True),
    Key("webhooks.env_prefix", "honoured", "the prefix a variable read by `headers` must "
        'have (default "LG_WEBHOOK_")', kind="string"),
    Key("webhooks.headers", "honoured", "headers every delivery carries; "
        "`${{ env.VAR }}` is replaced at start-up", kind="JSON object of strings"),
    Key("webhooks.url", "honoured", "the URL policy: the keys below", children=True),
    Key("webhooks.url.require_https", "honoured", "refuse http:// webhooks", kind="boolean"),
    Key("webhooks.url.allowed_domains", "honoured", 'the only hosts allowed ("*.example.com": '
        "its subdomains)", kind="list of strings"),
    Key("webhooks.url.allowed_ports", "honoured", "the only ports allowed (80/443 when the "
        "URL names none)", kind="list of integers"),
    Key("webhooks.url.max_url_length", "honoured", "longest URL accepted (default 4096)",
        kind="integer"),
    Key("webhooks.url.disable_loopback", "honoured", "loopback addresses are refused unless "
        "this is false (treadle never accepts relative URLs)", kind="boolean"),
    Key("webhooks.url.disable_private", "honoured", "treadle's addition: also refuse private "
        "addresses (RFC 1918, CGNAT, fc00::/7)", kind="boolean"),
    Key("ui", "refused", 'treadle serves no generative UI components: remove "ui"'),
    Key("ui_config", "refused", 'treadle serves no generative UI components: remove "ui_config"'),
    Key("store", "honoured", "an object of the keys below", children=True),
    Key("store.index", "honoured", "semantic search in the store: puts embed the texts at "
        "`fields`, a search `query` ranks by cosine similarity (the item's `score`); exact "
        "cosine, by sqlite-vec, pgvector or treadle (docs/operations.md: its scale); refused with "
        "encryption at rest", children=True),
    Key("store.index.dims", "honoured", "required: the size of the embedder's vectors",
        kind="integer"),
    Key("store.index.embed", "honoured", 'required: `"provider:model"` (LangChain\'s '
        '`init_embeddings`), `"./file.py:attr"` or `"module:attr"` (an `Embeddings` or a '
        "function `list[str] -> list[list[float]]`, sync or async)", kind="string"),
    Key("store.index.fields", "honoured", 'JSON paths of the texts to embed (default `["$"]`: '
        "the whole value); a put's `index` list replaces them, `index=False` indexes nothing",
        kind="list of strings"),
    Key("store.ttl", "honoured", "the TTL defaults of the graphs' store (a node's `store`), "
        "on the API and on every worker serving this file", children=True),
    Key("store.ttl.default_ttl", "honoured", "minutes an item lives when a node's put gives no "
        "ttl (an HTTP put without ttl keeps its item, as in langgraph-api)", kind="number"),
    Key("store.ttl.refresh_on_read", "honoured", "whether a get or search that does not say "
        "(node or HTTP) refreshes the TTLs it reads (default true)", kind="boolean"),
    Key("store.ttl.sweep_interval_minutes", "honoured", "accepted: an expired item is never "
        "read, and the API deletes expired items at least once a minute, whatever it says",
        kind="integer"),
    Key("checkpointer", "honoured", "an object of the keys below", children=True),
    Key("checkpointer.path", "refused", "treadle's checkpointer is its store (TREADLE_STORE): "
        'remove "checkpointer.path"'),
    Key("checkpointer.ttl", "honoured", "thread TTLs: a thread not updated (created, "
        "patched, run) for its TTL is deleted or pruned by a sweep of the API (every replica "
        "takes its share); a thread with a pending or running run is left alone",
        children=True),
    Key("checkpointer.ttl.strategy", "honoured", '"delete" (the thread with its checkpoints, '
        'runs and events; the default) or "keep_latest" (its checkpoints but the latest)',
        kind="string"),
    Key("checkpointer.ttl.default_ttl", "honoured", "minutes a thread made without a `ttl` "
        "of its own lives after its last update (absent: such threads never expire); "
        "threads made before it was set keep none", kind="number"),
    Key("checkpointer.ttl.sweep_interval_minutes", "honoured", "minutes between sweeps "
        "(default 5; TREADLE_TTL_SWEEP_INTERVAL, in seconds, overrides it)", kind="number"),
    Key("checkpointer.ttl.sweep_limit", "honoured", "most threads one sweep of one replica "
        "handles (default 1000)", kind="integer"),
    Key("checkpointer.serde", "honoured", "what reading stored values may rebuild, for "
        "checkpoints, task writes, run payloads, results and events (on the API and every "
        "worker serving this file; see docs/security.md)", children=True),
    Key("checkpointer.serde.allowed_msgpack_modules", "honoured", '[["module", "Class"], ...] '
        "rebuilt besides LangGraph's safe types and the graphs' schema types; others read as "
        "their data. Absent or null: only those (strict, as LANGGRAPH_STRICT_MSGPACK); true: any"),
    Key("checkpointer.serde.allowed_json_modules", "honoured", "the same for the legacy json "
        "format (absent: LangGraph's safe types only; true: any)"),
    Key("checkpointer.serde.pickle_fallback", "honoured", "pickle what msgpack cannot encode "
        "and read pickled values; default false (never unpickle)", kind="boolean"),
    Key("http", "honoured", "an object of the keys below", children=True),
    Key("http.cors", "honoured", "CORS headers: its keys are given to Starlette's "
        "CORSMiddleware (as langgraph-api does); without it treadle sends none", children=True),
    *(Key(f"http.cors.{name}", "honoured", "as in Starlette's CORSMiddleware", kind=kind)
      for name, kind in _CORS.items()),
    *http_keys(Key),
)

_BY_PATH = {k.path: k for k in KEYS}
_KINDS: dict[Kind, Callable[[Any], bool]] = {
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "list of strings": lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
    "list of integers": lambda v: isinstance(v, list) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in v),
    "JSON object of strings": lambda v: isinstance(v, dict) and all(
        isinstance(i, str) for i in v.values()),
}


@dataclass(frozen=True)
class Checked:
    """What :func:`check` found besides refused keys (which raise)."""

    warnings: list[str] = field(default_factory=list)  # unknown keys
    build_only: list[str] = field(default_factory=list)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON object in ``path`` (nothing checked yet)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror or exc}") from exc
    return parse(text, str(file))


def parse(text: str, source: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{source} must hold a JSON object")
    return doc


def check(doc: dict[str, Any], source: str) -> Checked:
    """Refuse (one ConfigError line) a key treadle does not implement; return the unknown
    keys' warnings and the build-only keys present."""
    found = Checked()
    refused: list[tuple[Key, str]] = []
    for name, pattern, value in _walk(doc):
        key = _BY_PATH.get(pattern)
        if key is None:
            found.warnings.append(_unknown(name, pattern, source))
        elif value is None:
            continue
        elif key.status == "refused":
            refused.append((key, name))
        elif key.status == "build-only":
            found.build_only.append(name)
        elif key.children and not isinstance(value, dict):
            raise ConfigError(f'{source}: "{name}" must be an object')
        elif key.kind is not None and not _KINDS[key.kind](value):
            raise ConfigError(f'{source}: "{name}" must be a {key.kind}')
    if refused:
        key, name = refused[0]
        more = f" (also unsupported: {', '.join(n for _, n in refused[1:])})" if refused[1:] else ""
        raise ConfigError(f'{source}: unsupported key "{name}": {key.note}{more}')
    dependencies(doc, source)
    thread_ttl((doc.get("checkpointer") or {}).get("ttl"), source)
    http_options(doc, source, lambda target: target)
    return found


def _walk(doc: dict[str, Any], prefix: str = "", pattern: str = ""
          ) -> Iterator[tuple[str, str, Any]]:
    """(dotted name, its table path, value) of every key, descending into objects whose
    keys the table lists (and into each graph given as an object)."""
    for name, value in doc.items():
        dotted, path = f"{prefix}{name}", f"{pattern}{name}"
        yield dotted, path, value
        key = _BY_PATH.get(path)
        if key is None or not key.children or not isinstance(value, dict):
            continue
        if path == "graphs":
            for graph, spec in value.items():
                if isinstance(spec, dict):
                    yield from _walk(spec, f"graphs.{graph}.", "graphs.*.")
        else:
            yield from _walk(value, f"{dotted}.", f"{path}.")


def _unknown(name: str, pattern: str, source: str) -> str:
    parent, _, leaf = pattern.rpartition(".")
    siblings = sorted(k.path.rpartition(".")[2] for k in KEYS
                      if k.path.rpartition(".")[0] == parent)
    close = difflib.get_close_matches(leaf, siblings, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f'{source}: unknown key "{name}" is ignored{hint}'


def dependencies(doc: dict[str, Any], source: str) -> list[str]:
    """The ``dependencies`` entries (stripped), checked to be a list of strings."""
    deps = doc.get("dependencies") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) and d.strip() for d in deps):
        raise ConfigError(f'{source}: "dependencies" must be a list of strings')
    return [d.strip() for d in deps]


def graph_refs(doc: dict[str, Any], source: str,
               resolve: Callable[[str], str]) -> dict[str, str]:
    """{name: REF} of ``graphs``; ``resolve`` maps a file path of a REF (``./a.py``) to
    where it is read from (the langgraph.json's directory, or the image's /app)."""
    graphs = doc.get("graphs")
    if not isinstance(graphs, dict) or not graphs:
        raise ConfigError(f'{source} has no "graphs" object (name -> "path.py:attr")')
    refs: dict[str, str] = {}
    for name, ref in graphs.items():
        ref = ref.get("path") if isinstance(ref, dict) else ref
        if not isinstance(ref, str):
            raise ConfigError(f"{source}: graph {name!r} must be a string 'path.py:attr'")
        target, sep, attr = ref.rpartition(":")
        if sep and (target.endswith(".py") or "/" in target):
            ref = f"{resolve(target)}:{attr}"
        refs[str(name)] = ref
    return refs


def graph_descriptions(doc: dict[str, Any]) -> dict[str, str]:
    """{name: description} of the graphs given as ``{"path", "description"}``."""
    graphs = doc.get("graphs")
    return {str(name): spec["description"] for name, spec in (graphs or {}).items()
            if isinstance(spec, dict) and isinstance(spec.get("description"), str)}


def apply(doc: dict[str, Any], file: Path) -> None:
    """What loading the graphs needs: local ``dependencies`` on ``sys.path`` and ``env``
    in ``os.environ`` (without overriding what is set), as ``langgraph dev`` does."""
    base = file.resolve().parent
    for dep in dependencies(doc, str(file)):
        if dep.startswith((".", "/")):  # a local directory, not a requirement
            path = str((base / dep).resolve())
            if path not in sys.path:
                sys.path.insert(0, path)
    env = doc.get("env")
    if isinstance(env, dict):
        for key, value in env.items():
            os.environ.setdefault(str(key), str(value))
    elif isinstance(env, str):
        _load_env_file(base / env)


def _load_env_file(path: Path) -> None:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        log.warning("langgraph.json names env file %s, which cannot be read", path)
        return
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            os.environ.setdefault(key.strip(), value.strip().strip("'\""))


@dataclass(frozen=True)
class Loaded:
    """A checked langgraph.json, as the server and the workers use it."""

    refs: dict[str, str]  # graph name -> REF (file paths made absolute)
    descriptions: dict[str, str] = field(default_factory=dict)  # graph name -> description
    cors: dict[str, Any] | None = None  # CORSMiddleware's keyword arguments (http.cors)
    store_ttl: dict[str, Any] | None = None  # LangGraph's TTLConfig (store.ttl)
    store_index: dict[str, Any] | None = None  # store.index, its embed file made absolute
    webhooks: dict[str, Any] | None = None  # the webhooks object (server.webhook_policy)
    disable_mcp: bool = False  # http.disable_mcp (treadle.server.mcp)
    disable_a2a: bool = False  # http.disable_a2a (treadle.server.a2a)
    source: str = "langgraph.json"  # where it was read from, for messages
    serde: dict[str, Any] | None = None  # checkpointer.serde (treadle.store.serde_policy)
    encryption: str | None = None  # "path:attr" of a langgraph_sdk Encryption (file made absolute)
    priority: str | None = None  # "path:attr" of a langgraph_sdk Priority (treadle.server.priority)
    auth: str | None = None  # auth.path, its file made absolute ("/abs/auth.py:auth")
    thread_ttl: dict[str, Any] | None = None  # checkpointer.ttl, checked (thread_ttl)
    http: HttpOptions = field(default_factory=HttpOptions)  # the http section but cors


def load(path: str | os.PathLike[str]) -> Loaded:
    """Read and check ``path`` (refused keys raise, unknown keys are logged), apply its
    ``env`` and put its local ``dependencies`` on ``sys.path``."""
    file = Path(path)
    doc = read(file)
    found = check(doc, str(file))
    for warning in found.warnings:
        log.warning("%s", warning)
    if found.build_only:
        log.info("%s: %s used by `langgraph build` only; treadle ignores it at run time",
                 file, ", ".join(found.build_only))
    base = file.resolve().parent
    refs = graph_refs(doc, str(file), lambda target: str((base / target).resolve()))
    apply(doc, file)
    webhooks = doc.get("webhooks")
    return Loaded(refs, graph_descriptions(doc), cors_options(doc), store_ttl(doc),
                  store_index=store_index(doc, lambda target: str((base / target).resolve())),
                  webhooks=webhooks if isinstance(webhooks, dict) else None, source=str(file),
                  disable_mcp=(doc.get("http") or {}).get("disable_mcp") is True,
                  disable_a2a=(doc.get("http") or {}).get("disable_a2a") is True,
                  serde=(doc.get("checkpointer") or {}).get("serde"),
                  encryption=path_ref(doc, "encryption", lambda t: str((base / t).resolve())),
                  priority=path_ref(doc, "priority", lambda t: str((base / t).resolve())),
                  auth=auth_ref(doc, str(file), lambda target: str((base / target).resolve())),
                  thread_ttl=thread_ttl((doc.get("checkpointer") or {}).get("ttl"), str(file)),
                  http=http_options(doc, str(file), lambda target: str((base / target).resolve())))


def path_ref(doc: dict[str, Any], key: str, resolve: Callable[[str], str]) -> str | None:
    """``<key>.path`` ("encryption", "priority") with its file made absolute by ``resolve``,
    or None without ``key``."""
    found = doc.get(key)
    if found is None:
        return None
    ref = found.get("path") if isinstance(found, dict) else None
    if not isinstance(ref, str) or not ref.strip():
        raise ConfigError(f'langgraph.json: "{key}" must be {{"path": "path.py:attr"}}')
    target, sep, attr = str(ref).rpartition(":")
    return f"{resolve(target)}:{attr}" if sep and (target.endswith(".py") or "/" in target) \
        else str(ref)


def auth_ref(doc: dict[str, Any], source: str, resolve: Callable[[str], str]) -> str | None:
    """``auth.path`` (a file path made absolute by ``resolve``), or None without auth."""
    auth = doc.get("auth")
    if auth is None:
        return None
    ref = auth.get("path") if isinstance(auth, dict) else None
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(f'{source}: "auth.path" must be "path/to/auth.py:attr" (the '
                          "langgraph_sdk.Auth instance)")
    target, _, attr = ref.rpartition(":")
    if target.endswith(".py") or "/" in target:
        ref = f"{resolve(target)}:{attr}"
    return ref


def store_index(doc: dict[str, Any], resolve: Callable[[str], str]) -> dict[str, Any] | None:
    """``store.index``, a file in ``embed`` made absolute (checked: graphs.store_index)."""
    index = (doc.get("store") or {}).get("index")
    if not isinstance(index, dict):
        return None
    embed = index.get("embed")
    target, sep, attr = embed.rpartition(":") if isinstance(embed, str) else ("", "", "")
    if sep and (target.endswith(".py") or "/" in target):
        index = {**index, "embed": f"{resolve(target)}:{attr}"}
    return index


def store_ttl(doc: dict[str, Any]) -> dict[str, Any] | None:
    """``store.ttl`` (checked by :func:`check`) as LangGraph's ``TTLConfig``, or None."""
    ttl = (doc.get("store") or {}).get("ttl")
    known = ("default_ttl", "refresh_on_read", "sweep_interval_minutes")
    return None if ttl is None else {k: ttl[k] for k in known if ttl.get(k) is not None}


def thread_ttl(ttl: Any, source: str) -> dict[str, Any] | None:
    """``checkpointer.ttl`` (or TREADLE_THREAD_TTL: a number is a ``default_ttl``) with its
    defaults filled in and its values checked (one ConfigError line), or None."""
    if ttl is None:
        return None
    if isinstance(ttl, int | float) and not isinstance(ttl, bool):
        ttl = {"default_ttl": ttl}
    if not isinstance(ttl, dict):
        raise ConfigError(f'{source}: "checkpointer.ttl" must be an object')
    got = {"strategy": "delete", "default_ttl": None, "sweep_interval_minutes": 5,
           "sweep_limit": 1000, **{k: v for k, v in ttl.items() if v is not None}}
    if got["strategy"] not in ("delete", "keep_latest"):
        raise ConfigError(f'{source}: "checkpointer.ttl.strategy" must be "delete" or '
                          f'"keep_latest" (got {got["strategy"]!r})')
    for name in ("default_ttl", "sweep_interval_minutes", "sweep_limit"):
        value = got[name]
        if value is None and name == "default_ttl":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or (
                name == "sweep_limit" and not isinstance(value, int)):
            kind = "a whole number" if name == "sweep_limit" else "a number"
            raise ConfigError(f'{source}: "checkpointer.ttl.{name}" must be {kind} above 0 '
                              f"(got {value!r})")
    return {k: got[k] for k in ("strategy", "default_ttl", "sweep_interval_minutes",
                                "sweep_limit")}


def cors_options(doc: dict[str, Any]) -> dict[str, Any] | None:
    """``http.cors`` without its null keys (checked by :func:`check`), or None."""
    cors = (doc.get("http") or {}).get("cors")
    return None if cors is None else \
        {k: v for k, v in cors.items() if k in _CORS and v is not None}


def read_langgraph_json(path: str | os.PathLike[str]) -> dict[str, str]:
    """``langgraph.json`` -> {name: REF}, as :func:`load` reads it."""
    return load(path).refs


def keys_markdown() -> str:
    """:data:`KEYS` as the Markdown table docs/api.md shows."""
    lines = ["| Key | Status | What treadle does / what to do |", "|---|---|---|"]
    for key in KEYS:
        lines.append(f"| `{key.path}` | {key.status} | {key.note} |")
    return "\n".join(lines) + "\n"
