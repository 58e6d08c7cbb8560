-- Per-host agent tokens, stored only as sha256 hashes: issued by an operator (a host may be registered
-- this way before it ever calls the API) or bound on a host's first request with the enrolment token.
-- A revoked host keeps its row with no hash, so that the enrolment token cannot bind it again; only a
-- new operator-issued token lets it back in.
CREATE TABLE agent_tokens (
    host_id     text PRIMARY KEY,
    token_hash  text UNIQUE,
    source      text CHECK (source IN ('issued', 'enrolled')),
    issued_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CHECK ((token_hash IS NULL) = (revoked_at IS NOT NULL))
);

-- Hosts that enrolled before this table existed keep their tokens.
INSERT INTO agent_tokens (host_id, token_hash, source, issued_at)
SELECT host_id, token_hash, 'enrolled', first_seen_at FROM agents WHERE token_hash IS NOT NULL;

COMMENT ON COLUMN agents.token_hash IS 'unused since migration 0005: see agent_tokens';
