-- Enrolment that survives a lost answer: a host's enrolled token is marked when first used, and until
-- then the enrolment token may enrol the host again (a new token replaces the one never received).
ALTER TABLE agent_tokens ADD COLUMN first_used_at timestamptz;
-- Tokens from before this migration are taken as in use: the enrolment token cannot rebind those hosts.
UPDATE agent_tokens SET first_used_at = issued_at WHERE token_hash IS NOT NULL;
