-- The agents table (control_plane/stores/agents.py).
-- Parameters are psycopg named placeholders.

-- name: upsert_agent
-- First contact registers the agent; later contacts refresh what it reports.
INSERT INTO agents AS a (host_id, namespace, labels, version, facts, collector, config_hash)
VALUES (%(host_id)s, COALESCE(%(namespace)s, 'default'), COALESCE(%(labels)s, '{}'::jsonb), %(version)s,
        COALESCE(%(facts)s, '{}'::jsonb), COALESCE(%(collector)s, '{}'::jsonb), %(config_hash)s)
ON CONFLICT (host_id) DO UPDATE
SET namespace = COALESCE(%(namespace)s, a.namespace),
    labels = COALESCE(%(labels)s, a.labels),
    version = COALESCE(%(version)s, a.version),
    facts = COALESCE(%(facts)s, a.facts),
    collector = COALESCE(%(collector)s, a.collector),
    config_hash = COALESCE(%(config_hash)s, a.config_hash),
    last_seen_at = now()
RETURNING host_id, namespace, (xmax = 0) AS inserted,
          (SELECT namespace FROM agents WHERE host_id = %(host_id)s) AS previous_namespace;

-- name: touch_agents
-- The contacts of the last second, in one statement: last-seen and the latest collector block (with the
-- config hash it runs). Says which hosts now run a different config than before.
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(host_id text, collector jsonb)
), before AS (
    SELECT a.host_id, a.config_hash FROM agents a JOIN input i ON i.host_id = a.host_id
)
UPDATE agents a
SET last_seen_at = now(),
    collector = COALESCE(i.collector, a.collector),
    config_hash = COALESCE(i.collector ->> 'config_hash', a.config_hash)
FROM input i JOIN before b ON b.host_id = i.host_id
WHERE a.host_id = i.host_id
RETURNING a.host_id, (COALESCE(i.collector ->> 'config_hash', b.config_hash)
                      IS DISTINCT FROM b.config_hash) AS config_changed;

-- name: list_agents
SELECT host_id, namespace, labels, version, first_seen_at, last_seen_at, facts, collector, config_hash,
       EXTRACT(EPOCH FROM now() - last_seen_at) AS seconds_since_seen,
       (SELECT d.template FROM pipeline_deployments d
        WHERE d.namespace = agents.namespace AND d.status = 'active') AS namespace_pipeline
FROM agents
WHERE (%(namespace)s::text IS NULL OR namespace = %(namespace)s)
ORDER BY host_id
LIMIT %(limit)s;

-- name: get_agent
SELECT host_id, namespace, labels, version, first_seen_at, last_seen_at, facts, collector, config_hash,
       EXTRACT(EPOCH FROM now() - last_seen_at) AS seconds_since_seen,
       (SELECT d.template FROM pipeline_deployments d
        WHERE d.namespace = agents.namespace AND d.status = 'active') AS namespace_pipeline
FROM agents WHERE host_id = %(host_id)s;

-- name: agents_last_seen
SELECT host_id, EXTRACT(EPOCH FROM last_seen_at) AS last_seen FROM agents;

-- name: agents_collector_restarts
-- Only what bigint holds: a row stored before bodies were bounded (restarts 1e20) cannot fail the scrape.
SELECT host_id, (collector ->> 'restarts')::bigint AS restarts FROM agents
WHERE jsonb_typeof(collector -> 'restarts') = 'number'
  AND (collector ->> 'restarts') ~ '^[0-9]{1,18}$';

-- name: namespace_agent_count
SELECT count(*) AS n FROM agents WHERE namespace = %(namespace)s;

-- name: agents_export
-- Each shipping host's export health as its last heartbeat reported it (collector.export).
SELECT host_id, collector -> 'export' AS export FROM agents
WHERE jsonb_typeof(collector -> 'export') = 'object';

-- name: agent_delete
-- Remove a host and the tasks it has not finished (its finished ones stay as history until retention).
WITH dropped AS (
    DELETE FROM tasks WHERE host_id = %(host_id)s AND status IN ('pending', 'assigned', 'running')
    RETURNING id
)
DELETE FROM agents WHERE host_id = %(host_id)s
RETURNING host_id, namespace, (SELECT count(*) FROM dropped) AS tasks_removed;

-- name: agent_namespace_binding
-- The namespace a host is bound to (and the one it was moved from), binding it to `namespace` if it
-- has none yet: its first contact, or its row's namespace when it registered before tokens were on.
-- DO UPDATE (to the same value) so that two first contacts at once both get the row back.
INSERT INTO agent_namespaces AS b (host_id, namespace, bound_by)
VALUES (%(host_id)s,
        COALESCE((SELECT namespace FROM agents WHERE host_id = %(host_id)s), %(namespace)s),
        'first_contact')
ON CONFLICT (host_id) DO UPDATE SET namespace = b.namespace
RETURNING namespace, moved_from;

-- name: bind_agent_namespace
-- An operator's binding (token issue with a namespace, or a move), remembering where the host was.
INSERT INTO agent_namespaces AS b (host_id, namespace, bound_by, moved_from)
VALUES (%(host_id)s, %(namespace)s, 'operator',
        (SELECT namespace FROM agents WHERE host_id = %(host_id)s AND namespace <> %(namespace)s))
ON CONFLICT (host_id) DO UPDATE
SET namespace = EXCLUDED.namespace, bound_by = 'operator', bound_at = now(),
    moved_from = CASE WHEN b.namespace <> EXCLUDED.namespace THEN b.namespace ELSE b.moved_from END;

-- name: move_agent
-- An operator moves a host: its row takes the namespace (its binding is written beside it).
UPDATE agents SET namespace = %(namespace)s WHERE host_id = %(host_id)s
RETURNING host_id, namespace, (SELECT namespace FROM agents WHERE host_id = %(host_id)s) AS previous_namespace;

-- name: unbind_agent_namespace
DELETE FROM agent_namespaces WHERE host_id = %(host_id)s;
