"""Semantic search on SQLite: the backend contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from semantic_contract import SemanticContract
from treadle.store import open_store
from treadle.store.base import Store


class TestSqliteSemantic(SemanticContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = open_store(f"sqlite:///{tmp_path}/m.db")
        try:
            yield s
        finally:
            s.close()


def test_an_encrypted_store_refuses_indexed_puts(tmp_path: Path) -> None:
    from langgraph.store.base import PutOp

    from semantic_contract import index
    from treadle.config import get_settings
    from treadle.errors import InputError
    from treadle.store.cipher import generate_key
    from treadle.store.memory import TreadleStore

    settings = get_settings(encryption_keys=f"k1:{generate_key()}")
    with open_store(f"sqlite:///{tmp_path}/e.db", settings=settings) as store:
        memory = TreadleStore(store, index=index())
        with pytest.raises(InputError, match="encryption at rest is on"):
            memory.batch([PutOp(("n",), "a", {"t": "secret words"})])
        assert memory.get(("n",), "a") is None  # nothing half-written
        memory.put(("n",), "b", {"t": "x"}, index=False)  # not indexed: stored, encrypted
        assert memory.get(("n",), "b") is not None


TEXTS = {"a": "red apple pie", "b": "green apple", "c": "dogs bark at night",
         "d": "apple apple red red", "e": "tax law"}


def test_sqlite_vec_ranks_as_treadle_does_in_python(tmp_path: Path) -> None:
    """Where sqlite3 loads extensions, sqlite-vec scores in SQL; its ranking and scores are
    those of treadle's own exact cosine (forced here by telling the store it has none)."""
    import os
    import sqlite3

    from semantic_contract import index
    from treadle.store.memory import TreadleStore

    with open_store(f"sqlite:///{tmp_path}/v.db") as store:
        vec = store._native_ranking() == "sqlite-vec"  # type: ignore[attr-defined]
        if not hasattr(sqlite3.Connection, "enable_load_extension"):
            assert not vec  # this Python's sqlite3 cannot load extensions
        if os.environ.get("TREADLE_EXPECT_SQLITE_VEC") == "1":
            assert vec
            assert "sqlite-vec" in store.vector_ranking()  # type: ignore[attr-defined]
        memory = TreadleStore(store, index=index())
        for key, text in TEXTS.items():
            memory.put(("n",), key, {"t": text})
        memory.put(("n",), "plain", {"t": "red apple"}, index=False)  # no vector: last
        found = [(i.key, i.score) for i in memory.search(("n",), query="red apple", limit=10)]
        store._vec = ""  # type: ignore[attr-defined]
        python = [(i.key, i.score) for i in memory.search(("n",), query="red apple", limit=10)]
    assert [k for k, _ in found] == [k for k, _ in python] and found[-1] == ("plain", None)
    assert [s for _, s in found[:-1]] == pytest.approx([s for _, s in python[:-1]], abs=1e-5)


def test_under_a_python_that_loads_extensions_sqlite_vec_ranks(tmp_path: Path) -> None:
    """This module again, under the machine's system Python (Debian's sqlite3 loads
    extensions, pyenv's build does not) with the same packages: sqlite-vec is loaded and the
    contract holds with it."""
    import os
    import subprocess
    import sys

    if os.environ.get("TREADLE_EXPECT_SQLITE_VEC") == "1":
        pytest.skip("this is the run under the system Python")
    system = Path("/usr/bin/python3")
    probe = "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)"
    if not system.exists() or subprocess.run([system, "-c", probe]).returncode != 0 \
            or subprocess.run([system, "-c", "import sys; assert sys.version_info[:2] == "
                               f"{sys.version_info[:2]}"]).returncode != 0:
        message = f"needs {system} (Python {sys.version_info[0]}.{sys.version_info[1]}) " \
                  "whose sqlite3 loads extensions"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    venv = tmp_path / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", venv], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    # The same packages as this run (pure Python, or built for this CPython minor version).
    (site / "this_run.pth").write_text("\n".join(p for p in sys.path if p and Path(p).is_dir()))
    tests = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(Path(__file__).resolve()), "--rootdir", str(tests.parent)],
        env={**os.environ, "TREADLE_EXPECT_SQLITE_VEC": "1"}, capture_output=True, text=True,
        timeout=600, cwd=tests.parent)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
