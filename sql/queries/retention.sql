-- Retention (control_plane/retention.py): each statement deletes up to `batch` expired rows, oldest
-- first, skipping rows another replica is deleting (SKIP LOCKED), and returns how many it deleted.
-- Kept whatever their age: anything of an experiment that has not finished (pending to analyzing) and
-- of an active deployment (its tasks tell enqueue_active_deployment_for_host a host already had it;
-- the measurements of the experiment it was promoted from are the evidence for it).
-- Parameters are psycopg named placeholders.

-- name: prune_tasks
-- Only final tasks; the pruned count is added to tasks_pruned in the same statement.
WITH keep AS (
    SELECT id FROM experiments WHERE phase NOT IN ('completed', 'failed', 'stopped')
    UNION ALL
    SELECT id FROM pipeline_deployments WHERE status = 'active'
), doomed AS (
    SELECT t.id FROM tasks t
    WHERE t.status IN ('completed', 'failed')
      AND t.updated_at < now() - make_interval(secs => %(max_age_seconds)s)
      AND (t.experiment_id IS NULL OR t.experiment_id NOT IN (SELECT id FROM keep))
      AND (t.deployment_id IS NULL OR t.deployment_id NOT IN (SELECT id FROM keep))
    ORDER BY t.updated_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM tasks t USING doomed WHERE t.id = doomed.id
    RETURNING t.type, t.status
), tallied AS (
    INSERT INTO tasks_pruned AS p (type, status, n)
    SELECT type, status, count(*) FROM deleted GROUP BY type, status
    ON CONFLICT (type, status) DO UPDATE SET n = p.n + EXCLUDED.n
)
SELECT count(*) AS n FROM deleted;

-- name: prune_events
-- An event is kept while its subject, or the experiment or deployment it names, is kept.
WITH keep AS (
    SELECT id FROM experiments WHERE phase NOT IN ('completed', 'failed', 'stopped')
    UNION ALL
    SELECT id FROM pipeline_deployments WHERE status = 'active'
), doomed AS (
    SELECT e.id FROM events e
    WHERE e.ts < now() - make_interval(secs => %(max_age_seconds)s)
      AND NOT EXISTS (
          SELECT 1 FROM keep k
          WHERE k.id IN (e.subject, e.data ->> 'experiment_id', e.data ->> 'deployment_id'))
    ORDER BY e.ts
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM events e USING doomed WHERE e.id = doomed.id
    RETURNING e.id
)
SELECT count(*) AS n FROM deleted;

-- name: prune_measurements
-- Measurements of finished experiments only (their analysis is stored on the experiment).
WITH keep AS (
    SELECT id FROM experiments WHERE phase NOT IN ('completed', 'failed', 'stopped')
    UNION ALL
    SELECT experiment_id FROM pipeline_deployments WHERE status = 'active' AND experiment_id IS NOT NULL
), doomed AS (
    SELECT m.id FROM experiment_measurements m
    WHERE m.received_at < now() - make_interval(secs => %(max_age_seconds)s)
      AND m.experiment_id NOT IN (SELECT id FROM keep)
    ORDER BY m.received_at
    LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM experiment_measurements m USING doomed WHERE m.id = doomed.id
    RETURNING m.id
)
SELECT count(*) AS n FROM deleted;
