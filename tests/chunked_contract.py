"""Chunked list values (store/chunked.py) on a real store: every value read back equals the
value put, through appends, edits, removals, forks, cold caches, prune, copy and encryption;
and what a step stores does not grow with the list. Run by the SQLite and PostgreSQL tests."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint

from treadle.store import chunked
from treadle.store.base import Store
from treadle.store.checkpointer import TreadleSaver


def put(saver: TreadleSaver, thread: str, parent: str | None, value: list[Any],
        step: int) -> str:
    """Put a checkpoint whose channel ``m`` holds ``value`` (a new version), child of
    ``parent``; returns its id."""
    cp = empty_checkpoint()
    cp["id"] = str(uuid.uuid6(clock_seq=step)) if hasattr(uuid, "uuid6") else f"{step:08d}"
    version = saver.get_next_version(None if step == 0 else f"{step:032}.0", None)
    cp["channel_versions"] = {"m": version}
    cp["channel_values"] = {"m": value}
    conf: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if parent is not None:
        conf["checkpoint_id"] = parent
    config: RunnableConfig = {"configurable": conf}
    saver.put(config, cp, {"source": "loop", "step": step}, {"m": version})
    return cp["id"]


def read(saver: TreadleSaver, thread: str, checkpoint_id: str) -> Any:
    found = saver.get_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": "",
                                              "checkpoint_id": checkpoint_id}})
    assert found is not None
    return found.checkpoint["channel_values"].get("m")


def stored_bytes(store: Store, thread: str) -> int:
    parts = store.thread_storage(thread).parts
    return sum(parts.get(part, (0, 0))[1] for part in ("checkpoints", "blobs"))


def mutate(rng: random.Random, value: list[Any], step: int) -> list[Any]:
    roll = rng.random()
    out = list(value)
    if roll < 0.6 or len(out) < 3:  # append one to three elements
        out += [{"id": f"m{step}-{i}", "text": "x" * rng.randint(1, 40)}
                for i in range(rng.randint(1, 3))]
    elif roll < 0.75:  # edit an element by id (a new object, as add_messages does)
        i = rng.randrange(len(out))
        out[i] = {**out[i], "text": out[i]["text"] + "!"}
    elif roll < 0.85:  # remove one
        del out[rng.randrange(len(out))]
    elif roll < 0.95:  # truncate
        del out[rng.randrange(len(out)):]
    else:  # replace everything
        out = [{"id": f"r{step}", "text": "fresh"}]
    return out


class ChunkedContract:
    @pytest.fixture
    def store(self) -> Store:
        raise NotImplementedError

    def test_random_histories_read_back_equal_warm_and_cold(self, store: Store) -> None:
        for seed in range(4):
            rng = random.Random(seed)
            saver = TreadleSaver(store)
            thread = f"random-{seed}"
            value: list[Any] = []
            history: list[tuple[str, list[Any]]] = []
            parent: str | None = None
            for step in range(120):
                if history and rng.random() < 0.08:  # fork from an older checkpoint
                    parent, value = history[rng.randrange(len(history))]
                value = mutate(rng, value, step)
                parent = put(saver, thread, parent, value, step)
                history.append((parent, value))
                assert read(saver, thread, parent) == value
            cold = TreadleSaver(store)
            for checkpoint_id, expected in history:
                assert read(cold, thread, checkpoint_id) == expected
            listed = {t.config["configurable"]["checkpoint_id"]: t.checkpoint["channel_values"]["m"]
                      for t in cold.list({"configurable": {"thread_id": thread}})}
            assert listed == dict(history)

    def test_long_lists_are_chunked_and_a_step_stores_what_it_added(self, store: Store) -> None:
        saver = TreadleSaver(store)
        value: list[Any] = []
        parent: str | None = None
        sizes = []
        for step in range(240):
            value = [*value, {"id": str(step), "text": "y" * 500}]
            parent = put(saver, "long", parent, value, step)
            sizes.append(stored_bytes(store, "long"))
        assert parent is not None
        first = sizes[29] - sizes[9]
        last = sizes[-1] - sizes[-21]
        assert last <= 1.5 * first, (first, last)
        # Whole lists would have stored ~240 * 240 / 2 elements of 500 bytes.
        assert sizes[-1] < 240 * 500 * 4
        assert read(TreadleSaver(store), "long", parent) == value

    def test_whole_lists_grow_so_the_test_above_can_fail(self, store: Store,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(chunked, "MIN_LENGTH", 10**9)
        saver = TreadleSaver(store)
        value: list[Any] = []
        parent: str | None = None
        sizes = []
        for step in range(120):
            value = [*value, {"id": str(step), "text": "y" * 500}]
            parent = put(saver, "whole", parent, value, step)
            sizes.append(stored_bytes(store, "whole"))
        assert sizes[-1] - sizes[-21] > 3 * (sizes[29] - sizes[9])

    def test_an_element_changed_in_place_is_stored_changed(self, store: Store) -> None:
        saver = TreadleSaver(store)
        value = [{"id": str(i), "text": "t"} for i in range(40)]
        first = put(saver, "inplace", None, value, 0)
        value[3]["text"] = "changed in place"  # the same object, mutated
        value = [*value, {"id": "40", "text": "t"}]
        second = put(saver, "inplace", first, value, 1)
        cold = TreadleSaver(store)
        assert read(cold, "inplace", second)[3]["text"] == "changed in place"
        assert read(cold, "inplace", first)[3]["text"] == "t"

    def test_prune_keeps_the_chunks_the_latest_needs_and_drops_the_rest(self, store: Store) -> None:
        saver = TreadleSaver(store)
        value: list[Any] = []
        parent: str | None = None
        for step in range(80):
            value = mutate(random.Random(step), value, step) if step % 10 == 9 else \
                [*value, {"id": str(step), "text": "z" * 100}]
            parent = put(saver, "pruned", parent, value, step)
        assert parent is not None
        rows_before = store.thread_storage("pruned").parts["blobs"][0]
        saver.prune(["pruned"], strategy="keep_latest")
        assert read(TreadleSaver(store), "pruned", parent) == value
        rows_after = store.thread_storage("pruned").parts["blobs"][0]
        # the latest value's row and its chunks (about len / CHUNK + CHUNK of them) only
        assert rows_after <= 2 + len(value) // chunked.CHUNK + chunked.CHUNK < rows_before
        # and the thread goes on from its latest checkpoint, with a warm and a cold saver
        value = [*value, {"id": "after", "text": "z"}]
        nxt = put(TreadleSaver(store), "pruned", parent, value, 81)
        assert read(TreadleSaver(store), "pruned", nxt) == value

    def test_copy_thread_and_delete_thread(self, store: Store) -> None:
        saver = TreadleSaver(store)
        value: list[Any] = []
        parent: str | None = None
        for step in range(40):
            value = [*value, {"id": str(step)}]
            parent = put(saver, "source", parent, value, step)
        assert parent is not None
        saver.copy_thread("source", "copy")
        saver.delete_thread("source")
        assert read(TreadleSaver(store), "copy", parent) == value
        assert saver.get_tuple({"configurable": {"thread_id": "source", "checkpoint_ns": ""}}) is None

    def test_chunks_are_not_reused_after_another_process_pruned_them(self, store: Store) -> None:
        """Process A wrote a value; process B (another saver) moved the thread on and pruned
        it; A then writes on B's checkpoint without reading it first: it must not name the
        chunks it knew, which the prune dropped."""
        saver_a, saver_b = TreadleSaver(store), TreadleSaver(store)
        value = [{"id": str(i), "text": "a" * 50} for i in range(64)]
        parent: str | None = None
        for step in range(3):
            value = [*value, {"id": f"s{step}"}]
            parent = put(saver_a, "stale", parent, value, step)
        assert parent is not None
        read(saver_b, "stale", parent)
        moved = [{"id": "edited", "text": "b"}, *value[1:]]  # no chunk shared with A's value
        latest = put(saver_b, "stale", parent, moved, 3)
        saver_b.prune(["stale"], strategy="keep_latest")
        again = [*value, {"id": "late"}]
        written = put(saver_a, "stale", latest, again, 4)
        assert read(TreadleSaver(store), "stale", written) == again
