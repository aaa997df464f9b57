-- treadle schema v11 (SQLite): the vector index of the memory store (langgraph.json
-- store.index; treadle.store.vectors). One row per indexed text of an item: field is the
-- JSON path of store.index.fields (or of the put's index list), n numbers the texts that
-- path found, embedding is the vector as little-endian float32 bytes. A put replaces an
-- item's rows; the trigger deletes them with the item (deletes and TTL sweeps alike).
CREATE TABLE IF NOT EXISTS treadle_item_vectors (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    field     TEXT NOT NULL,
    n         INTEGER NOT NULL,
    embedding BLOB NOT NULL,
    PRIMARY KEY (namespace, key, field, n)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS treadle_item_vectors_gone AFTER DELETE ON treadle_items
BEGIN
    DELETE FROM treadle_item_vectors WHERE namespace = old.namespace AND key = old.key;
END;
