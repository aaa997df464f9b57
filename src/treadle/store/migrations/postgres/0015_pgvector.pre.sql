-- treadle schema v15 (PostgreSQL): semantic search ranked in SQL by pgvector where the
-- extension is installed in the database (CREATE EXTENSION vector; treadle does not install
-- it). "pre": only adds a column, two functions and a trigger.
--
-- treadle_item_vectors.embedding stays the source of truth (little-endian float32 bytes,
-- written by every version). With pgvector installed, the trigger also keeps the vector as
-- real[] in components, which a search casts to pgvector's vector type and ranks with its
-- cosine distance (<=>). Rows written before pgvector was installed have no components:
-- a search decodes their bytes in SQL (treadle_f32le) instead, so they rank the same, only
-- slower; putting them again stores their components. Without pgvector, components stays
-- NULL (no second copy) and treadle ranks in Python.
ALTER TABLE treadle_item_vectors ADD COLUMN IF NOT EXISTS components REAL[];

-- Little-endian IEEE 754 float32 bytes as real[] (vectors are finite: no NaN or infinity).
-- (PostgreSQL's | and << share one precedence: the shifts are parenthesised.)
CREATE OR REPLACE FUNCTION treadle_f32le(b bytea) RETURNS real[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg((CASE WHEN s = 1 THEN -1 ELSE 1 END) * (CASE
               WHEN e = 0 THEN m * power(2::float8, -149)
               ELSE (1 + m / 8388608.0) * power(2::float8, e - 127) END)::real ORDER BY i),
           '{}'::real[])
    FROM (SELECT i, (bits >> 31) & 1 AS s, ((bits >> 23) & 255)::int AS e,
                 (bits & 8388607)::float8 AS m
          FROM (SELECT i, get_byte(b, 4 * i)::bigint | (get_byte(b, 4 * i + 1)::bigint << 8)
                          | (get_byte(b, 4 * i + 2)::bigint << 16)
                          | (get_byte(b, 4 * i + 3)::bigint << 24) AS bits
                FROM generate_series(0, length(b) / 4 - 1) AS i) AS w) AS f
$$;

CREATE OR REPLACE FUNCTION treadle_item_vector_components() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
        NEW.components := treadle_f32le(NEW.embedding);
    ELSE
        NEW.components := NULL;
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS treadle_item_vector_components ON treadle_item_vectors;
CREATE TRIGGER treadle_item_vector_components BEFORE INSERT OR UPDATE OF embedding
    ON treadle_item_vectors FOR EACH ROW EXECUTE FUNCTION treadle_item_vector_components();
