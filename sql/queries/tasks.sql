-- The tasks table (control_plane/queue.py, TaskQueue): every statement that claims, enqueues,
-- reports, leases or cancels tasks.
-- Parameters are psycopg named placeholders.

-- name: claim_tasks
-- Claim each host's oldest, most urgent pending tasks (up to `limit` a host) and lease them, for many
-- hosts in one statement: the long-poll claimer batches every host that may have work.
WITH picked AS (
    SELECT p.id
    FROM unnest(%(host_ids)s::text[]) AS h(host_id)
    CROSS JOIN LATERAL (
        SELECT id FROM tasks
        WHERE tasks.host_id = h.host_id AND status = 'pending'
          -- A deployment that is no longer active is never applied (the reaper fails its tasks).
          AND (tasks.deployment_id IS NULL OR EXISTS (
              SELECT 1 FROM pipeline_deployments d WHERE d.id = tasks.deployment_id AND d.status = 'active'))
        ORDER BY priority DESC, created_at ASC
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    ) p
)
UPDATE tasks t
SET status = 'assigned',
    attempts = t.attempts + 1,
    assigned_at = now(),
    updated_at = now(),
    lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
FROM picked
WHERE t.id = picked.id
RETURNING t.id, t.host_id, t.type, t.action, t.priority, t.attempts, t.max_attempts,
          t.experiment_id, t.deployment_id, t.lease_expires_at, t.created_at,
          CASE WHEN t.deployment_id IS NULL THEN t.payload
               ELSE t.payload || COALESCE((
                   SELECT jsonb_build_object('config_yaml', v.config_yaml, 'config_hash', v.config_hash,
                                             'pipeline', d.template, 'deployment_id', d.id,
                                             'keep_list', v.rendered -> 'keep_list',
                                             'shipping', v.rendered -> 'shipping',
                                             'secret_files', v.secret_files)
                   FROM pipeline_deployment_versions v
                   JOIN pipeline_deployments d ON d.id = v.deployment_id
                   WHERE v.deployment_id = t.deployment_id AND v.version = t.deployment_version
               ), '{}'::jsonb)
          END AS payload;

-- name: enqueue_task
INSERT INTO tasks (host_id, type, action, payload, priority, max_attempts, experiment_id, deployment_id,
                   deployment_version)
VALUES (%(host_id)s, %(type)s, %(action)s, %(payload)s, %(priority)s, %(max_attempts)s, %(experiment_id)s,
        %(deployment_id)s, %(deployment_version)s)
RETURNING id, host_id, type, action, status, priority, created_at;

-- name: enqueue_fanout_hosts
-- One task for each host in an array: one statement however many hosts.
INSERT INTO tasks (host_id, type, action, payload, priority, max_attempts, experiment_id, deployment_id,
                   deployment_version)
SELECT h, %(type)s, %(action)s, %(payload)s, %(priority)s, %(max_attempts)s, %(experiment_id)s,
       %(deployment_id)s, %(deployment_version)s
FROM unnest(%(host_ids)s::text[]) AS h;

-- name: enqueue_fanout_namespace
-- One task for every agent of a namespace, in one statement.
INSERT INTO tasks (host_id, type, action, payload, priority, max_attempts, experiment_id, deployment_id,
                   deployment_version)
SELECT a.host_id, %(type)s, %(action)s, %(payload)s, %(priority)s, %(max_attempts)s, %(experiment_id)s,
       %(deployment_id)s, %(deployment_version)s
FROM agents a
WHERE a.namespace = %(namespace)s;

-- name: report_tasks
-- Agents' reports, many (of many hosts) in one statement: the status change, its audit event and the NOTIFY that
-- carries it to every replica. Allowed from assigned/running (the live delivery) and, for a final
-- status, from pending when the task was delivered before (its lease ran out while the report was
-- in flight). Rows not returned were not changed; the caller finds out why.
WITH input AS (
    SELECT * FROM jsonb_to_recordset(%(reports)s::jsonb)
        AS r(id uuid, host_id text, status text, result jsonb, error text)
), updated AS (
    UPDATE tasks t
    SET status = i.status,
        updated_at = now(),
        started_at = CASE WHEN i.status = 'running' THEN COALESCE(t.started_at, now()) ELSE t.started_at END,
        completed_at = CASE WHEN i.status = 'completed' THEN now() ELSE t.completed_at END,
        failed_at = CASE WHEN i.status = 'failed' THEN now() ELSE t.failed_at END,
        result = COALESCE(i.result, t.result),
        error = COALESCE(i.error, t.error),
        lease_expires_at = CASE WHEN i.status = 'running'
                                THEN now() + make_interval(secs => %(lease_seconds)s) ELSE NULL END
    FROM input i
    WHERE t.id = i.id AND t.host_id = i.host_id
      AND (t.status IN ('assigned', 'running')
           OR (t.status = 'pending' AND t.attempts > 0 AND i.status IN ('completed', 'failed')))
    RETURNING t.id, t.host_id, t.type, t.action, t.status, t.experiment_id, t.deployment_id, t.attempts,
              i.error AS reported_error
), logged AS (
    INSERT INTO events (topic, kind, subject, reason, data)
    SELECT 'tasks', 'task_' || u.status, u.id::text, left(u.reported_error, 500),
           jsonb_build_object('task_id', u.id, 'host_id', u.host_id, 'type', u.type, 'action', u.action,
                              'status', u.status, 'experiment_id', u.experiment_id,
                              'deployment_id', u.deployment_id, 'error', left(u.reported_error, 500))
    FROM updated u
    RETURNING id, ts, topic, kind, subject, reason, data
), notified AS (
    SELECT count(pg_notify('phoenix_events', json_build_object(
               'id', l.id, 'ts', l.ts, 'topic', l.topic, 'kind', l.kind, 'subject', l.subject,
               'reason', l.reason, 'data', l.data)::text)) AS n
    FROM logged l
)
SELECT u.id, u.host_id, u.type, u.action, u.status, u.experiment_id, u.deployment_id, u.attempts,
       (SELECT n FROM notified) AS notified
FROM updated u;

-- name: task_statuses
SELECT id, host_id, status FROM tasks WHERE id = ANY(%(ids)s::uuid[]);

-- name: extend_leases
-- A live agent keeps the leases of the tasks it says it is working on (all of its tasks when it
-- does not say).
UPDATE tasks SET lease_expires_at = now() + make_interval(secs => %(lease_seconds)s)
WHERE host_id = %(host_id)s AND status IN ('assigned', 'running')
  AND (%(task_ids)s::uuid[] IS NULL OR id = ANY(%(task_ids)s::uuid[]));

-- name: reap_expired_leases
-- Return tasks whose agent went quiet to the queue (waking that host's polls), or fail them after
-- their last attempt.
WITH expired AS (
    SELECT id FROM tasks
    WHERE status IN ('assigned', 'running') AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT 1000
    FOR UPDATE SKIP LOCKED
), reaped AS (
    UPDATE tasks t
    SET status = CASE WHEN t.attempts >= t.max_attempts THEN 'failed' ELSE 'pending' END,
        failed_at = CASE WHEN t.attempts >= t.max_attempts THEN now() ELSE NULL END,
        error = CASE WHEN t.attempts >= t.max_attempts
                     THEN format('lease expired %%s times: agent %%s stopped reporting', t.attempts, t.host_id)
                     ELSE t.error END,
        lease_expires_at = NULL,
        updated_at = now()
    FROM expired
    WHERE t.id = expired.id
    RETURNING t.id, t.host_id, t.type, t.status, t.attempts, t.experiment_id, t.error
), woken AS (
    SELECT count(pg_notify('phoenix_tasks', h)) AS n
    FROM (SELECT DISTINCT host_id AS h FROM reaped WHERE status = 'pending') s
)
SELECT r.*, (SELECT n FROM woken) AS woken FROM reaped r;

-- name: fail_inactive_deployment_tasks
-- Pending tasks of a deployment that is no longer active (superseded, rolled back, failed), such as one
-- the reaper requeued after its lease expired: failed, never applied after the deployment that replaced
-- it. Only active deployments are watched for failed hosts, so this fails no rollout.
UPDATE tasks t
SET status = 'failed', failed_at = now(), updated_at = now(), lease_expires_at = NULL,
    error = format('not applied: deployment %%s is %%s', d.id, d.status)
FROM pipeline_deployments d
WHERE t.deployment_id = d.id AND t.status = 'pending' AND d.status <> 'active'
RETURNING t.id, t.host_id, t.type, t.status, t.attempts, t.experiment_id, t.error;

-- name: release_tasks
-- Undo a claim whose long poll lost its client before the answer went out.
UPDATE tasks SET status = 'pending', attempts = GREATEST(attempts - 1, 0), assigned_at = NULL,
       lease_expires_at = NULL, updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'assigned';

-- name: list_tasks
SELECT id, host_id, type, action, status, priority, attempts, max_attempts, experiment_id, deployment_id,
       created_at, assigned_at, started_at, completed_at, failed_at, updated_at, lease_expires_at, result, error
FROM tasks
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(host_id)s::text IS NULL OR host_id = %(host_id)s)
  AND (%(experiment_id)s::text IS NULL OR experiment_id = %(experiment_id)s)
ORDER BY created_at DESC
LIMIT %(limit)s;

-- name: queue_depth
SELECT status, count(*) AS n FROM tasks GROUP BY status;

-- name: tasks_finished
-- What the tasks table holds plus what retention pruned (tasks_pruned), read in one snapshot, so the
-- counter never goes backwards.
SELECT type, status, sum(n)::bigint AS n FROM (
    SELECT type, status, count(*) AS n FROM tasks WHERE status IN ('completed', 'failed') GROUP BY type, status
    UNION ALL
    SELECT type, status, n FROM tasks_pruned
) s
GROUP BY type, status;

-- ---------------------------------------------------------------------------------------------------
-- Retention (control_plane/retention.py): each statement deletes up to `batch` expired rows, oldest
-- first, skipping rows another replica is deleting (SKIP LOCKED), and returns how many it deleted.
-- Kept whatever their age: anything of an experiment that has not finished (pending to analyzing) and
-- of an active deployment (its tasks tell enqueue_active_deployment_for_host a host already had it;

-- name: renew_leases_after_outage
-- While the database was out of reach no agent could renew a lease: give every lease a full period
-- from now, so the reaper does not take back work the agents still hold.
UPDATE tasks SET lease_expires_at = GREATEST(lease_expires_at, now() + make_interval(secs => %(lease_seconds)s))
WHERE status IN ('assigned', 'running');

-- name: enqueue_active_deployment_for_hosts
-- Agents that joined a namespace (or run another config) get its active deployment, unless they run it
-- or have it queued.
INSERT INTO tasks (host_id, type, action, payload, priority, deployment_id, deployment_version)
SELECT a.host_id, 'deployment', 'apply', jsonb_build_object('reason', 'joined namespace'), 10, d.id, v.version
FROM agents a
JOIN pipeline_deployments d ON d.namespace = a.namespace AND d.status = 'active'
JOIN LATERAL (SELECT version, config_hash FROM pipeline_deployment_versions
              WHERE deployment_id = d.id ORDER BY version DESC LIMIT 1) v ON true
WHERE a.host_id = ANY(%(host_ids)s::text[])
  AND a.config_hash IS DISTINCT FROM v.config_hash
  AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.host_id = a.host_id AND t.deployment_id = d.id)
RETURNING id;

-- name: enqueue_restored_deployment
-- Send the restored deployment to the namespace's hosts that may not run it: those whose reported config
-- differs and those that received (or may still receive) the retired one; not to a host that has it
-- queued or in hand after every task of the retired one (it runs it last). A host that failed the
-- rollout and restored this config itself is skipped. Used by the operator's rollback and the watcher.
INSERT INTO tasks (host_id, type, action, payload, priority, max_attempts, deployment_id, deployment_version)
SELECT a.host_id, 'deployment', 'apply', %(payload)s, %(priority)s, %(max_attempts)s, %(deployment_id)s,
       %(version)s
FROM agents a
WHERE a.namespace = %(namespace)s
  AND (a.config_hash IS DISTINCT FROM %(config_hash)s
       OR a.host_id IN (SELECT host_id FROM tasks
                        WHERE deployment_id = %(failed_id)s
                          AND status IN ('pending', 'assigned', 'running', 'completed')))
  AND a.host_id NOT IN (SELECT r.host_id FROM tasks r
                        WHERE r.deployment_id = %(deployment_id)s AND r.status IN ('pending', 'assigned', 'running')
                          AND NOT EXISTS (SELECT 1 FROM tasks f
                                          WHERE f.host_id = r.host_id AND f.deployment_id = %(failed_id)s
                                            AND f.status IN ('pending', 'assigned', 'running', 'completed')
                                            AND f.created_at > r.created_at))
RETURNING host_id;

-- name: cancel_undelivered_deployment_tasks
-- Stop the rollout: tasks no host has received yet are failed with the reason (the experiment driver
-- cancels undelivered starts the same way). Delivered ones are left to finish; the restore covers them.
UPDATE tasks SET status = 'failed', failed_at = now(), updated_at = now(), error = %(reason)s
WHERE deployment_id = %(id)s AND status = 'pending' AND attempts = 0
RETURNING host_id;

-- name: cancel_pending_deployment_tasks
-- A deployment superseded by another: its tasks still pending (never received, or requeued after a lease
-- expired) are failed, so that it is never applied after the one that replaced it.
UPDATE tasks SET status = 'failed', failed_at = now(), updated_at = now(), error = %(reason)s
WHERE deployment_id = %(id)s AND status = 'pending'
RETURNING host_id;

-- name: cancel_pending_experiment_starts
UPDATE tasks SET status = 'failed', failed_at = now(), updated_at = now(), error = %(reason)s
WHERE experiment_id = %(id)s AND action = 'start' AND status = 'pending'
RETURNING host_id;
