-- treadle schema v13 (PostgreSQL): the vector index of the memory store (langgraph.json
-- store.index; treadle.store.vectors). "pre": only adds a table.
--
-- One row per indexed text of an item: field is the JSON path of store.index.fields (or of
-- the put's index list), n numbers the texts that path found, embedding is the vector as
-- little-endian float32 bytes (ranked by exact cosine in treadle; pgvector is not required).
-- A put replaces an item's rows; the foreign key deletes them with the item (deletes and
-- TTL sweeps alike).
CREATE TABLE IF NOT EXISTS treadle_item_vectors (
    namespace TEXT COLLATE "C" NOT NULL,
    key       TEXT COLLATE "C" NOT NULL,
    field     TEXT NOT NULL,
    n         INTEGER NOT NULL,
    embedding BYTEA NOT NULL,
    PRIMARY KEY (namespace, key, field, n),
    FOREIGN KEY (namespace, key) REFERENCES treadle_items (namespace, key) ON DELETE CASCADE
);
