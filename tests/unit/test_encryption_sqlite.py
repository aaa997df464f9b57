"""Encryption at rest in the store (treadle.store.encryption) on SQLite: the checkpoint and
queue contracts pass on an encrypted store, plaintext rows are refused once encryption is
on (unless a migration allows them), metadata keys are chosen, user handlers work."""

from __future__ import annotations

import base64
import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import START, StateGraph
from langgraph_sdk import Encryption, EncryptionContext

from checkpoint_contract import CheckpointContract
from queue_contract import QueueContract
from resources_contract import ResourcesContract
from treadle.config import get_settings
from treadle.errors import AccessFilterError, EncryptionError, InputError
from treadle.store import open_store
from treadle.store.base import Store
from treadle.store.checkpointer import TreadleSaver
from treadle.store.cipher import parse_keyring
from treadle.store.encryption import AtRest, KeyringCipher, SealingSerde, UserCipher
from treadle.store.items import ItemSearch, ItemWrite
from treadle.store.queue import NewRun
from treadle.store.thread_records import Thread

KEYS = "k1:" + base64.b64encode(b"a" * 32).decode()
SECRET = "S3CRET-unit-0042"


def _open(url: str, **settings: Any) -> Store:
    return open_store(url, settings=get_settings(**settings))


class TestEncryptedSqliteCheckpoints(CheckpointContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/c.db"

    @pytest.fixture
    def store(self, url: str) -> Iterator[Store]:
        s = _open(url, encryption_keys=KEYS)
        try:
            yield s
        finally:
            s.close()


class TestEncryptedSqliteQueue(QueueContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = _open(f"sqlite:///{tmp_path}/q.db", encryption_keys=KEYS)
        try:
            yield s
        finally:
            s.close()


class State(TypedDict, total=False):
    text: str


def _write_everything(store: Store) -> None:
    """A checkpoint (through a LangGraph graph), a thread record, an item and a run."""
    builder = StateGraph(State)
    builder.add_node("echo", lambda s: {"text": s["text"] + "!"})
    builder.add_edge(START, "echo")
    graph = builder.compile(checkpointer=TreadleSaver(store))
    config: RunnableConfig = {"configurable": {"thread_id": "t1"}}
    assert graph.invoke({"text": SECRET}, config) == {"text": SECRET + "!"}
    store.put_thread(Thread("t1", {"ssn": SECRET}, values={"text": SECRET}))
    store.write_items([ItemWrite.put(("ns",), "k", {"v": SECRET})])
    store.enqueue_run(NewRun("r1", "t1", "ref:g", SECRET.encode(), metadata='{"ssn": "x"}'))


def _read_everything(store: Store) -> None:
    saver = TreadleSaver(store)
    tup = saver.get_tuple({"configurable": {"thread_id": "t1"}})
    assert tup is not None and tup.checkpoint["channel_values"]["text"] == SECRET + "!"
    thread = store.get_thread("t1")
    assert thread is not None and thread.values == {"text": SECRET}
    assert thread.metadata["ssn"] == SECRET
    item = store.get_items([(("ns",), "k")])[0]
    assert item is not None and item.value == {"v": SECRET}
    run = store.get_run("r1")
    assert run is not None and run.payload == SECRET.encode()


def _file_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*") if p.is_file())


def test_an_encrypted_store_keeps_no_plaintext_and_reads_back(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    store = _open(f"sqlite:///{db}", encryption_keys=KEYS, encrypted_metadata_fields="ssn")
    try:
        _write_everything(store)
        _read_everything(store)
    finally:
        store.close()
    assert SECRET.encode() not in _file_bytes(db)


def test_turning_encryption_on_refuses_plaintext_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/p.db"
    plain = _open(url)
    try:
        _write_everything(plain)
    finally:
        plain.close()
    store = _open(url, encryption_keys=KEYS, encrypted_metadata_fields="ssn")
    try:
        refusal = "not encrypted while encryption at rest is on.*TREADLE_ENCRYPTION_ALLOW_PLAINTEXT"
        with pytest.raises(EncryptionError, match=refusal):
            TreadleSaver(store).get_tuple({"configurable": {"thread_id": "t1"}})
        with pytest.raises(EncryptionError, match=refusal):
            store.get_thread("t1")
        with pytest.raises(EncryptionError, match=refusal):
            store.get_items([(("ns",), "k")])
        with pytest.raises(EncryptionError, match=refusal):
            store.get_run("r1")
    finally:
        store.close()
    # The migration setting reads the legacy rows; what is written from then on is sealed.
    migrating = _open(url, encryption_keys=KEYS, encrypted_metadata_fields="ssn",
                      encryption_allow_plaintext=True)
    try:
        _read_everything(migrating)
        migrating.write_items([ItemWrite.put(("ns",), "new", {"v": "fresh"})])
    finally:
        migrating.close()
    # Turned off again, an encrypted row is refused too (never returned as ciphertext).
    off = _open(url)
    try:
        with pytest.raises(EncryptionError, match="encrypted but encryption at rest is off"):
            off.get_items([(("ns",), "new")])
    finally:
        off.close()


def test_only_chosen_metadata_keys_are_encrypted(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    store = _open(f"sqlite:///{db}", encryption_keys=KEYS, encrypted_metadata_fields="ssn")
    try:
        store.put_thread(Thread("t", {"ssn": SECRET, "owner": "alice"}))
        raw = sqlite3.connect(db).execute(
            "SELECT metadata FROM treadle_thread_records").fetchone()[0]
        stored = json.loads(raw)
        assert stored["owner"] == "alice" and SECRET not in stored["ssn"]
        # The others stay filterable; an encrypted key cannot be filtered on.
        assert [t.thread_id for t in store.search_threads(metadata={"owner": "alice"})] == ["t"]
        # a filter on an encrypted key is refused, not answered with nothing
        with pytest.raises(InputError, match="'ssn' is encrypted at rest"):
            store.search_threads(metadata={"ssn": SECRET})
        with pytest.raises(InputError, match="'ssn' is encrypted at rest"):
            store.count_assistants(metadata={"ssn": SECRET})
        with pytest.raises(AccessFilterError, match="authorization filter compares metadata "
                                                    "'ssn'"):
            store.search_threads(access={"$or": [{"owner": "bob"}, {"ssn": SECRET}]})
        with pytest.raises(AccessFilterError, match="'ssn'"):
            store.get_thread("t", access={"ssn": SECRET})
        with pytest.raises(AccessFilterError, match="'ssn'"):
            store.delete_cron("c", access={"ssn": {"$eq": SECRET}})
        assert store.get_thread("t", access={"owner": "alice"}) is not None
        with pytest.raises(InputError, match="'ssn' is encrypted at rest"):
            list(TreadleSaver(store).list(None, filter={"ssn": SECRET}))  # history's filter
        with pytest.raises(InputError, match="cannot be searched by values"):
            store.search_threads(values={"x": 1})
        with pytest.raises(InputError, match="cannot be searched with a filter"):
            store.search_items(_item_search({"v": 1}))
    finally:
        store.close()


def _item_search(filter: dict[str, Any]) -> ItemSearch:
    from treadle.store.items import parse_filter

    return ItemSearch(prefix=(), conditions=parse_filter(filter), limit=10, offset=0)


def test_plaintext_metadata_key_is_refused() -> None:
    ring = parse_keyring(KEYS)
    assert ring is not None
    at_rest = AtRest(KeyringCipher(ring), metadata_keys=frozenset({"ssn"}))
    sealed = at_rest.seal_metadata({"ssn": SECRET, "plain": 1}, "thread")
    assert at_rest.open_metadata(sealed, "thread") == {"ssn": SECRET, "plain": 1}
    with pytest.raises(EncryptionError, match="metadata key 'ssn'"):
        at_rest.open_metadata({"ssn": SECRET}, "thread")


def test_error_texts_keep_treadle_notes_around_the_sealed_part() -> None:
    ring = parse_keyring(KEYS)
    assert ring is not None
    at_rest = AtRest(KeyringCipher(ring))
    sealed = at_rest.seal_text(f"ValueError: {SECRET}", "run", "error")
    assert sealed is not None and SECRET not in sealed
    noted = f"worker lost twice; last error: {sealed}"
    assert at_rest.open_text(noted, "run", "error") == \
        f"worker lost twice; last error: ValueError: {SECRET}"


def _user_encryption() -> tuple[Encryption, list[tuple[str | None, str | None]]]:
    enc = Encryption()
    seen: list[tuple[str | None, str | None]] = []

    @enc.encrypt.blob
    async def encrypt_blob(ctx: EncryptionContext, blob: bytes) -> bytes:
        seen.append((ctx.model, ctx.field))
        return bytes(b ^ 0x5A for b in blob)

    @enc.decrypt.blob
    async def decrypt_blob(ctx: EncryptionContext, blob: bytes) -> bytes:
        return bytes(b ^ 0x5A for b in blob)

    return enc, seen


def test_user_blob_handlers_seal_with_their_context() -> None:
    enc, seen = _user_encryption()
    at_rest = AtRest(UserCipher(enc), metadata_keys=frozenset({"ssn"}))
    sealed = at_rest.seal(SECRET.encode(), "checkpoint", "blob")
    assert SECRET.encode() not in sealed
    assert at_rest.open(sealed, "checkpoint", "blob") == SECRET.encode()
    assert ("checkpoint", "blob") in seen
    md = at_rest.seal_metadata({"ssn": SECRET, "plain": "p"}, "run")  # no JSON handlers:
    assert md["plain"] == "p" and SECRET not in md["ssn"]  # chosen keys via the blob handler
    assert at_rest.open_metadata(md, "run")["ssn"] == SECRET
    ring = parse_keyring(KEYS)
    assert ring is not None
    keyring_sealed = AtRest(KeyringCipher(ring)).seal(b"x", "run", "kwargs")
    with pytest.raises(EncryptionError, match="built-in keyring"):
        at_rest.open(keyring_sealed, "run", "kwargs")


def test_langgraph_aes_key_alone_turns_encryption_on(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """LangGraph's own variable is honoured: the saver, runs and items are sealed with it."""
    monkeypatch.setenv("LANGGRAPH_AES_KEY", "0123456789abcdef0123456789abcdef")
    db = tmp_path / "lg.db"
    store = _open(f"sqlite:///{db}", encrypted_metadata_fields="ssn")
    try:
        assert store.at_rest.enabled
        _write_everything(store)
        _read_everything(store)
    finally:
        store.close()
    assert SECRET.encode() not in _file_bytes(db)
    monkeypatch.delenv("LANGGRAPH_AES_KEY")
    off = _open(f"sqlite:///{db}")
    try:
        with pytest.raises(EncryptionError, match="encrypted but encryption at rest is off"):
            off.get_run("r1")
    finally:
        off.close()


def test_a_given_serializer_is_sealed_too(tmp_path: Path) -> None:
    """A saver given its own serde (e.g. LangGraph's EncryptedSerializer) still has the
    store's encryption around it: the store never holds what the serde wrote in the clear."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from treadle.store.encryption import SealingSerde

    store = _open(f"sqlite:///{tmp_path}/s.db", encryption_keys=KEYS)
    try:
        saver = TreadleSaver(store, serde=JsonPlusSerializer())
        assert isinstance(saver.serde, SealingSerde)
        kind, data = saver.serde.dumps_typed({"x": SECRET})
        assert SECRET.encode() not in data
        assert saver.serde.loads_typed((kind, data)) == {"x": SECRET}
    finally:
        store.close()


class TestEncryptedSqliteResources(ResourcesContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        s = _open(f"sqlite:///{tmp_path}/r.db", encryption_keys=KEYS,
                  encrypted_metadata_fields="not_filtered_here")
        try:
            yield s
        finally:
            s.close()

    def test_search_threads_filters(self, store: Store) -> None:
        """Thread values are encrypted: a values filter is refused, never silently empty."""
        store.put_thread(Thread("t1", {"k": 1}, values={"v": 1}))
        assert [t.thread_id for t in store.search_threads(metadata={"k": 1})] == ["t1"]
        with pytest.raises(InputError, match="cannot be searched by values"):
            store.search_threads(values={"v": 1})
        with pytest.raises(InputError, match="cannot be searched by values"):
            store.count_threads(values={"v": 1})


def test_a_run_a_worker_cannot_open_ends_with_the_reason(tmp_path: Path) -> None:
    """A queued plaintext run claimed once encryption is on errors at once (not after its
    leases run out), and its error says why."""
    db = tmp_path / "w.db"
    plain = _open(f"sqlite:///{db}")
    try:
        plain.enqueue_run(NewRun("r1", "t1", "ref:g", b"legacy payload"))
    finally:
        plain.close()
    store = _open(f"sqlite:///{db}", encryption_keys=KEYS)
    try:
        with pytest.raises(EncryptionError, match="not encrypted"):
            store.claim_run("w1", ["ref:g"], False, 10.0)
        assert store.claim_run("w1", ["ref:g"], False, 10.0) is None
    finally:
        store.close()
    status = sqlite3.connect(db).execute("SELECT status FROM treadle_runs").fetchone()[0]
    assert status == "error"
    migrating = _open(f"sqlite:///{db}", encryption_keys=KEYS, encryption_allow_plaintext=True)
    try:
        run = migrating.get_run("r1")
        assert run is not None and run.error is not None and "not encrypted" in run.error
    finally:
        migrating.close()



@dataclasses.dataclass
class Note:
    text: str


class NoteState(TypedDict, total=False):
    note: Note


def test_compile_keeps_the_seal_when_it_allows_a_subgraphs_types(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """treadle.compile widens the serializer's allow-list to the types of subgraphs that
    LangGraph finds in node functions (a dataclass here) and swaps the saver's serializer
    for the wider one: the new one is sealed too."""
    import treadle

    monkeypatch.setenv("TREADLE_ENCRYPTION_KEYS", KEYS)
    sub_builder = StateGraph(NoteState)
    sub_builder.add_node("echo", lambda s: {"note": Note(s["note"].text + "!")})
    sub_builder.add_edge(START, "echo")
    sub = sub_builder.compile()

    def call(state: State) -> State:
        return {"text": sub.invoke({"note": Note(state["text"])})["note"].text}

    builder = StateGraph(State)
    builder.add_node("call", call)
    builder.add_edge(START, "call")
    db = tmp_path / "compiled.db"
    graph = treadle.compile(builder, store=f"sqlite:///{db}")
    try:
        assert isinstance(graph.checkpointer, TreadleSaver)
        assert isinstance(graph.checkpointer.serde, SealingSerde)
        config: RunnableConfig = {"configurable": {"thread_id": "c1"}}
        assert graph.invoke({"text": SECRET}, config) == {"text": SECRET + "!"}
        sub_state = graph.get_state(config, subgraphs=True)
        assert sub_state.values == {"text": SECRET + "!"}
    finally:
        graph.close()
    assert SECRET.encode() not in _file_bytes(db)
