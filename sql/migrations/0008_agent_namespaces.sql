-- A host's namespace, bound once agent tokens are on: set when an operator issues its token with a
-- namespace or moves it (PATCH /api/v1/agents/{host_id}), else by its first contact. A heartbeat that
-- names another namespace is refused (403), so a host's token cannot move it into another namespace (and be
-- sent that namespace's deployments and experiments).
CREATE TABLE agent_namespaces (
    host_id     text PRIMARY KEY,
    namespace   text NOT NULL,
    bound_by    text NOT NULL CHECK (bound_by IN ('first_contact', 'operator')),
    -- The namespace an operator moved the host from: its agent's config still names it until updated,
    -- and a heartbeat naming it is taken (without moving the host back).
    moved_from  text,
    bound_at    timestamptz NOT NULL DEFAULT now()
);
