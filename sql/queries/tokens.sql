-- Agent tokens (migration 0005, control_plane/stores/tokens.py): per-host tokens, stored as sha256
-- hashes only.
-- Parameters are psycopg named placeholders.

-- name: agent_token_get
SELECT token_hash, revoked_at, source, first_used_at FROM agent_tokens WHERE host_id = %(host_id)s;

-- name: agent_token_used
-- The host's own token was presented for the first time: the enrolment token can no longer rebind it.
UPDATE agent_tokens SET first_used_at = now() WHERE host_id = %(host_id)s AND first_used_at IS NULL;

-- name: agent_token_reenrol
-- Enrolment again, for a host whose enrolled token was never used (its answer was lost): a new token
-- replaces it. NULL when the host's token is in use, issued by an operator, or revoked.
UPDATE agent_tokens SET token_hash = %(token_hash)s, issued_at = now()
WHERE host_id = %(host_id)s AND source = 'enrolled' AND first_used_at IS NULL AND token_hash IS NOT NULL
RETURNING host_id;

-- name: agent_tokens_enrolled
SELECT count(*) AS n FROM agent_tokens WHERE source = 'enrolled';

-- name: agent_token_enrolment_lock
-- Enrolments under agent_token_max_hosts take turns until their transaction ends, so that the count
-- each one checks includes every enrolment before it (no two can take the last place).
SELECT pg_advisory_xact_lock(hashtext('phoenix-enrolment'));

-- name: agent_token_owner
-- Which host a presented token belongs to, to tell "another host's token" (403) from "no token" (401).
SELECT host_id FROM agent_tokens WHERE token_hash = %(token_hash)s;

-- name: agent_token_enrol
-- Bind a host that has no row yet to its own token; NULL when it is bound or revoked already.
INSERT INTO agent_tokens (host_id, token_hash, source) VALUES (%(host_id)s, %(token_hash)s, 'enrolled')
ON CONFLICT (host_id) DO NOTHING
RETURNING host_id;

-- name: agent_token_issue
-- An operator issues (or rotates) a host's token; the previous one stops working at once.
WITH previous AS (SELECT token_hash FROM agent_tokens WHERE host_id = %(host_id)s)
INSERT INTO agent_tokens (host_id, token_hash, source) VALUES (%(host_id)s, %(token_hash)s, 'issued')
ON CONFLICT (host_id) DO UPDATE
SET token_hash = EXCLUDED.token_hash, source = 'issued', issued_at = now(), revoked_at = NULL
RETURNING host_id, issued_at, EXISTS (SELECT 1 FROM previous WHERE token_hash IS NOT NULL) AS replaced;

-- name: agent_token_revoke
-- Revoke a host's token; the row stays (without a hash) so that the enrolment token cannot bind it again.
WITH previous AS (SELECT token_hash FROM agent_tokens WHERE host_id = %(host_id)s)
INSERT INTO agent_tokens (host_id, token_hash, source, revoked_at) VALUES (%(host_id)s, NULL, NULL, now())
ON CONFLICT (host_id) DO UPDATE SET token_hash = NULL, revoked_at = COALESCE(agent_tokens.revoked_at, now())
RETURNING host_id, revoked_at, EXISTS (SELECT 1 FROM previous WHERE token_hash IS NOT NULL) AS had_token;
