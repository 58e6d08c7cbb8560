-- Pipeline deployments (control_plane/stores/deployments.py). Failed rollouts (migration 0006): an
-- active deployment whose hosts failed it beyond its max_failed_hosts is marked failed and the
-- namespace's previous deployment restored.
-- Parameters are psycopg named placeholders.

-- name: insert_deployment
INSERT INTO pipeline_deployments (id, name, namespace, template, parameters, status, previous_id, experiment_id,
                                  max_failed_hosts, destination)
VALUES (%(id)s, %(name)s, %(namespace)s, %(template)s, %(parameters)s, 'active', %(previous_id)s,
        %(experiment_id)s, %(max_failed_hosts)s, %(destination)s)
RETURNING id;

-- name: insert_deployment_version
INSERT INTO pipeline_deployment_versions (deployment_id, version, config_yaml, config_hash, rendered, secret_files)
VALUES (%(deployment_id)s, %(version)s, %(config_yaml)s, %(config_hash)s, %(rendered)s, %(secret_files)s);

-- name: lock_namespace
-- Serialise deployment changes per namespace (transaction-scoped).
SELECT pg_advisory_xact_lock(hashtext('phoenix-namespace:' || %(namespace)s));

-- name: try_lock_namespace
-- lock_namespace without waiting: the watcher holds a deployment row lock, so it must never wait for a
-- namespace lock that a deploy or rollback (which lock the namespace first) may hold.
SELECT pg_try_advisory_xact_lock(hashtext('phoenix-namespace:' || %(namespace)s)) AS locked;

-- name: active_deployment
SELECT d.id, d.name, d.namespace, d.template, d.parameters, d.status, d.previous_id, d.experiment_id,
       d.created_at, d.updated_at, d.destination, v.version, v.config_hash
FROM pipeline_deployments d
JOIN LATERAL (SELECT version, config_hash FROM pipeline_deployment_versions
              WHERE deployment_id = d.id ORDER BY version DESC LIMIT 1) v ON true
WHERE d.namespace = %(namespace)s AND d.status = 'active';

-- name: set_deployment_status
UPDATE pipeline_deployments SET status = %(status)s, updated_at = now() WHERE id = %(id)s;

-- name: set_deployment_status_reason
UPDATE pipeline_deployments SET status = %(status)s, status_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s;

-- name: get_deployment
SELECT d.id, d.name, d.namespace, d.template, d.parameters, d.status, d.previous_id, d.experiment_id,
       d.created_at, d.updated_at, d.destination, d.max_failed_hosts, d.status_reason, d.restored_at,
       v.version, v.config_hash, v.config_yaml,
       (SELECT jsonb_object_agg(status, n) FROM (
            SELECT status, count(*) AS n FROM tasks WHERE deployment_id = d.id GROUP BY status) s) AS task_counts
FROM pipeline_deployments d
JOIN LATERAL (SELECT version, config_hash, config_yaml FROM pipeline_deployment_versions
              WHERE deployment_id = d.id ORDER BY version DESC LIMIT 1) v ON true
WHERE d.id = %(id)s;

-- name: list_deployments
SELECT d.id, d.name, d.namespace, d.template, d.parameters, d.status, d.previous_id, d.experiment_id,
       d.created_at, d.updated_at, d.destination, d.max_failed_hosts, d.status_reason, d.restored_at,
       v.version, v.config_hash,
       (SELECT jsonb_object_agg(status, n) FROM (
            SELECT status, count(*) AS n FROM tasks WHERE deployment_id = d.id GROUP BY status) s) AS task_counts
FROM pipeline_deployments d
JOIN LATERAL (SELECT version, config_hash FROM pipeline_deployment_versions
              WHERE deployment_id = d.id ORDER BY version DESC LIMIT 1) v ON true
WHERE (%(namespace)s::text IS NULL OR d.namespace = %(namespace)s)
ORDER BY d.created_at DESC
LIMIT %(limit)s;

-- name: failing_deployments
-- Watched active deployments (max_failed_hosts set, not restored by a rollback) failed by more hosts than
-- they tolerate. The EXISTS probe keeps a pass to an index look-up per active deployment.
SELECT d.id, d.namespace FROM pipeline_deployments d
WHERE d.status = 'active' AND d.max_failed_hosts IS NOT NULL AND d.restored_at IS NULL
  AND EXISTS (SELECT 1 FROM tasks t WHERE t.deployment_id = d.id AND t.status = 'failed')
  AND (SELECT count(DISTINCT t.host_id) FROM tasks t
       WHERE t.deployment_id = d.id AND t.status = 'failed') > d.max_failed_hosts
ORDER BY d.updated_at
LIMIT 50;

-- name: lock_failing_deployment
-- The deployment row, unless another replica is handling it (SKIP LOCKED) or it is no longer watched.
SELECT d.id, d.name, d.namespace, d.template, d.previous_id, d.experiment_id, d.max_failed_hosts
FROM pipeline_deployments d
WHERE d.id = %(id)s AND d.status = 'active' AND d.max_failed_hosts IS NOT NULL AND d.restored_at IS NULL
FOR UPDATE SKIP LOCKED;

-- name: deployment_failed_hosts
-- The hosts that failed a deployment, earliest failure first (the first is usually the cause), each
-- with its latest error, and how many there are in all.
SELECT host_id, error, failed_at, count(*) OVER () AS total
FROM (SELECT DISTINCT ON (host_id) host_id, error, failed_at FROM tasks
      WHERE deployment_id = %(id)s AND status = 'failed'
      ORDER BY host_id, failed_at DESC) s
ORDER BY failed_at, host_id
LIMIT %(limit)s;

-- name: fail_deployment
UPDATE pipeline_deployments SET status = 'failed', status_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s AND status = 'active'
RETURNING id;

-- name: restore_deployment
-- Make a deployment the namespace's active one again after a rollback (never failed automatically then).
UPDATE pipeline_deployments
SET status = 'active', status_reason = %(reason)s, restored_at = now(), updated_at = now()
WHERE id = %(id)s
RETURNING id;

-- name: destinations_of_hosts
-- Where the namespaces of these hosts ship now (NULL: nowhere), one row per distinct destination.
SELECT DISTINCT d.destination
FROM agents a
LEFT JOIN pipeline_deployments d ON d.namespace = a.namespace AND d.status = 'active'
WHERE a.host_id = ANY(%(hosts)s::text[]);
