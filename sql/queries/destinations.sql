-- The destinations table (control_plane/stores/destinations.py).
-- Parameters are psycopg named placeholders.

-- name: insert_destination
INSERT INTO destinations (name, type, endpoint, header_names, headers_sealed, tls, compression, timeout_seconds)
VALUES (%(name)s, %(type)s, %(endpoint)s, %(header_names)s, %(headers_sealed)s, %(tls)s, %(compression)s,
        %(timeout_seconds)s)
ON CONFLICT (name) DO NOTHING
RETURNING name;

-- name: update_destination
UPDATE destinations
SET type = %(type)s, endpoint = %(endpoint)s, header_names = %(header_names)s,
    headers_sealed = %(headers_sealed)s, tls = %(tls)s, compression = %(compression)s,
    timeout_seconds = %(timeout_seconds)s, updated_at = now()
WHERE name = %(name)s
RETURNING name;

-- name: get_destination
SELECT name, type, endpoint, header_names, headers_sealed, tls, compression, timeout_seconds, created_at,
       updated_at,
       ARRAY(SELECT d.namespace FROM pipeline_deployments d
             WHERE d.status = 'active' AND d.destination = x.name ORDER BY d.namespace) AS namespaces
FROM destinations x
WHERE name = %(name)s;

-- name: lock_destination
SELECT name FROM destinations WHERE name = %(name)s FOR UPDATE;

-- name: list_destinations
SELECT name, type, endpoint, header_names, tls, compression, timeout_seconds, created_at, updated_at,
       ARRAY(SELECT d.namespace FROM pipeline_deployments d
             WHERE d.status = 'active' AND d.destination = x.name ORDER BY d.namespace) AS namespaces
FROM destinations x
ORDER BY name;

-- name: destination_users
-- What still ships to a destination: namespaces of active deployments and active experiments' candidates.
SELECT 'deployment' AS kind, id, namespace FROM pipeline_deployments
WHERE status = 'active' AND destination = %(name)s
UNION ALL
SELECT 'experiment', id, NULL FROM experiments
WHERE candidate_destination = %(name)s AND phase IN ('pending', 'deploying', 'warming_up', 'running', 'analyzing');

-- name: delete_destination
DELETE FROM destinations WHERE name = %(name)s RETURNING name;
