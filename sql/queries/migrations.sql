-- Migration bookkeeping (control_plane/db.py) and the health probe.
-- Parameters are psycopg named placeholders.

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_lock
SELECT pg_advisory_lock(7201834512);

-- name: migrations_unlock
SELECT pg_advisory_unlock(7201834512);

-- name: migrations_applied
SELECT version FROM schema_migrations ORDER BY version;

-- name: migrations_record
INSERT INTO schema_migrations (version, name) VALUES (%(version)s, %(name)s);

-- name: ping
SELECT 1;
