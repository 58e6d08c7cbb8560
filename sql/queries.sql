-- Every statement the control plane runs, loaded by name (`-- name: x`) once at import.
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

-- name: claim_tasks
-- Claim each host's oldest, most urgent pending tasks (up to `limit` a host) and lease them, for many
-- hosts in one statement: the long-poll claimer batches every host that may have work.
WITH picked AS (
    SELECT p.id
    FROM unnest(%(host_ids)s::text[]) AS h(host_id)
    CROSS JOIN LATERAL (
        SELECT id FROM tasks
        WHERE tasks.host_id = h.host_id AND status = 'pending'
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
                                             'keep_list', v.rendered -> 'keep_list')
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

-- name: get_task
SELECT id, host_id, type, action, payload, status, priority, attempts, max_attempts, lease_expires_at,
       experiment_id, deployment_id, created_at, assigned_at, started_at, completed_at, failed_at,
       updated_at, result, error
FROM tasks WHERE id = %(id)s;

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

-- name: task_owner_status
SELECT status FROM tasks WHERE id = %(id)s AND host_id = %(host_id)s;

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

-- name: namespace_agent_count
SELECT count(*) AS n FROM agents WHERE namespace = %(namespace)s;

-- name: insert_deployment
INSERT INTO pipeline_deployments (id, name, namespace, template, parameters, status, previous_id, experiment_id,
                                  max_failed_hosts)
VALUES (%(id)s, %(name)s, %(namespace)s, %(template)s, %(parameters)s, 'active', %(previous_id)s,
        %(experiment_id)s, %(max_failed_hosts)s)
RETURNING id;

-- name: insert_deployment_version
INSERT INTO pipeline_deployment_versions (deployment_id, version, config_yaml, config_hash, rendered)
VALUES (%(deployment_id)s, %(version)s, %(config_yaml)s, %(config_hash)s, %(rendered)s);

-- name: lock_namespace
-- Serialise deployment changes per namespace (transaction-scoped).
SELECT pg_advisory_xact_lock(hashtext('phoenix-namespace:' || %(namespace)s));

-- name: active_deployment
SELECT d.id, d.name, d.namespace, d.template, d.parameters, d.status, d.previous_id, d.experiment_id,
       d.created_at, d.updated_at, v.version, v.config_hash
FROM pipeline_deployments d
JOIN LATERAL (SELECT version, config_hash FROM pipeline_deployment_versions
              WHERE deployment_id = d.id ORDER BY version DESC LIMIT 1) v ON true
WHERE d.namespace = %(namespace)s AND d.status = 'active';

-- name: set_deployment_status
UPDATE pipeline_deployments SET status = %(status)s, updated_at = now() WHERE id = %(id)s;

-- name: get_deployment
SELECT d.id, d.name, d.namespace, d.template, d.parameters, d.status, d.previous_id, d.experiment_id,
       d.created_at, d.updated_at, d.max_failed_hosts, d.status_reason, d.restored_at,
       v.version, v.config_hash, v.config_yaml,
       (SELECT jsonb_object_agg(status, n) FROM (
            SELECT status, count(*) AS n FROM tasks WHERE deployment_id = d.id GROUP BY status) s) AS task_counts
FROM pipeline_deployments d
JOIN LATERAL (SELECT version, config_hash, config_yaml FROM pipeline_deployment_versions
              WHERE deployment_id = d.id ORDER BY version DESC LIMIT 1) v ON true
WHERE d.id = %(id)s;

-- name: list_deployments
SELECT d.id, d.name, d.namespace, d.template, d.parameters, d.status, d.previous_id, d.experiment_id,
       d.created_at, d.updated_at, d.max_failed_hosts, d.status_reason, d.restored_at,
       v.version, v.config_hash,
       (SELECT jsonb_object_agg(status, n) FROM (
            SELECT status, count(*) AS n FROM tasks WHERE deployment_id = d.id GROUP BY status) s) AS task_counts
FROM pipeline_deployments d
JOIN LATERAL (SELECT version, config_hash FROM pipeline_deployment_versions
              WHERE deployment_id = d.id ORDER BY version DESC LIMIT 1) v ON true
WHERE (%(namespace)s::text IS NULL OR d.namespace = %(namespace)s)
ORDER BY d.created_at DESC
LIMIT %(limit)s;

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

-- name: insert_event
-- Append to the audit log and publish to every API replica in one statement.
WITH e AS (
    INSERT INTO events (topic, kind, subject, reason, data)
    VALUES (%(topic)s, %(kind)s, %(subject)s, %(reason)s, %(data)s)
    RETURNING id, ts, topic, kind, subject, reason, data
)
SELECT e.id, pg_notify('phoenix_events', json_build_object(
           'id', e.id, 'ts', e.ts, 'topic', e.topic, 'kind', e.kind, 'subject', e.subject,
           'reason', e.reason, 'data', e.data)::text)
FROM e;

-- name: list_events
SELECT id, ts, topic, kind, subject, reason, data FROM events
WHERE (%(subject)s::text IS NULL OR subject = %(subject)s)
  AND (%(topic)s::text IS NULL OR topic = %(topic)s)
ORDER BY id DESC LIMIT %(limit)s;

-- name: insert_experiment
INSERT INTO experiments (id, name, spec) VALUES (%(id)s, %(name)s, %(spec)s)
RETURNING id;

-- name: get_experiment
SELECT id, name, spec, phase, phase_reason, phase_changed_at, hosts, rendered, analysis, promoted_deployments,
       rolled_back_at, created_at, started_at, running_at, analyzing_at, finished_at
FROM experiments WHERE id = %(id)s;

-- name: lock_experiment
SELECT id, name, spec, phase, phase_reason, phase_changed_at, hosts, rendered, analysis, promoted_deployments,
       rolled_back_at, created_at, started_at, running_at, analyzing_at, finished_at
FROM experiments WHERE id = %(id)s FOR UPDATE;

-- name: list_experiments
SELECT id, name, spec, phase, phase_reason, phase_changed_at, hosts, promoted_deployments, rolled_back_at,
       created_at, started_at, running_at, analyzing_at, finished_at,
       (analysis -> 'fleet') AS fleet, (analysis ->> 'verdict') AS verdict
FROM experiments
WHERE (%(phase)s::text IS NULL OR phase = %(phase)s)
ORDER BY created_at DESC LIMIT %(limit)s;

-- name: claim_active_experiments
-- The driver's work list; replicas skip what another is advancing.
SELECT id, name, spec, phase, phase_reason, phase_changed_at, hosts, rendered, analysis, promoted_deployments,
       rolled_back_at, created_at, started_at, running_at, analyzing_at, finished_at,
       EXTRACT(EPOCH FROM now() - phase_changed_at) AS seconds_in_phase
FROM experiments
WHERE phase IN ('deploying', 'warming_up', 'running', 'analyzing')
ORDER BY phase_changed_at
LIMIT 20
FOR UPDATE SKIP LOCKED;

-- name: set_experiment_phase
UPDATE experiments
SET phase = %(phase)s, phase_reason = %(reason)s, phase_changed_at = now(),
    started_at = CASE WHEN %(phase)s = 'deploying' THEN now() ELSE started_at END,
    running_at = CASE WHEN %(phase)s = 'running' THEN now() ELSE running_at END,
    analyzing_at = CASE WHEN %(phase)s = 'analyzing' THEN now() ELSE analyzing_at END,
    finished_at = CASE WHEN %(phase)s IN ('completed', 'failed', 'stopped') THEN now() ELSE finished_at END
WHERE id = %(id)s;

-- name: set_experiment_hosts
UPDATE experiments SET hosts = %(hosts)s, rendered = %(rendered)s WHERE id = %(id)s;

-- name: set_experiment_analysis
UPDATE experiments SET analysis = %(analysis)s WHERE id = %(id)s;

-- name: set_experiment_promoted
UPDATE experiments SET promoted_deployments = promoted_deployments || %(ids)s::text[] WHERE id = %(id)s;

-- name: set_experiment_rolled_back
UPDATE experiments SET rolled_back_at = now() WHERE id = %(id)s AND %(ids)s::text[] IS NOT NULL;

-- name: experiment_target_hosts
SELECT host_id FROM agents
WHERE namespace = ANY(%(namespaces)s::text[]) OR host_id = ANY(%(hosts)s::text[])
ORDER BY host_id;

-- name: known_hosts
SELECT host_id FROM agents WHERE host_id = ANY(%(hosts)s::text[]);

-- name: experiment_task_states
-- Per host, the state of the experiment's latest start task.
SELECT DISTINCT ON (host_id) host_id, status, error, attempts, started_at, completed_at
FROM tasks
WHERE experiment_id = %(id)s AND type = 'experiment' AND action = 'start'
ORDER BY host_id, created_at DESC;

-- name: cancel_pending_experiment_starts
UPDATE tasks SET status = 'failed', failed_at = now(), updated_at = now(), error = %(reason)s
WHERE experiment_id = %(id)s AND action = 'start' AND status = 'pending'
RETURNING host_id;

-- name: experiment_hosts_started
-- Hosts that received the experiment (and so have something to restore).
SELECT DISTINCT host_id FROM tasks
WHERE experiment_id = %(id)s AND action = 'start'
  AND (status IN ('assigned', 'running', 'completed') OR (status = 'failed' AND attempts > 0));

-- name: insert_measurements
INSERT INTO experiment_measurements (experiment_id, host_id, variant, pipeline, ts, phase, sample)
SELECT %(experiment_id)s, %(host_id)s, s ->> 'variant', s ->> 'pipeline',
       to_timestamp((s ->> 'ts')::double precision), %(phase)s, s
FROM jsonb_array_elements(%(samples)s::jsonb) AS s;

-- name: experiment_measurements
SELECT host_id, variant, pipeline, ts, received_at, phase, sample
FROM experiment_measurements
WHERE experiment_id = %(id)s
ORDER BY received_at;

-- name: upsert_emission
INSERT INTO host_emissions (host_id, variant, pipeline, sample)
SELECT %(host_id)s, s ->> 'variant', s ->> 'pipeline', s
FROM jsonb_array_elements(%(samples)s::jsonb) AS s
ON CONFLICT (host_id, variant) DO UPDATE
SET pipeline = EXCLUDED.pipeline, sample = EXCLUDED.sample, reported_at = now();

-- name: clear_emissions
DELETE FROM host_emissions WHERE host_id = %(host_id)s AND NOT (variant = ANY(%(variants)s::text[]));

-- name: current_emissions
SELECT e.host_id, e.variant, e.pipeline, e.reported_at, e.sample, a.namespace
FROM host_emissions e JOIN agents a USING (host_id)
WHERE e.reported_at > now() - make_interval(secs => %(max_age_seconds)s);

-- name: latest_completed_experiments
SELECT DISTINCT ON (ns) ns AS namespace, id, name, spec, analysis, finished_at
FROM experiments, LATERAL jsonb_array_elements_text(spec -> 'target_namespaces') AS ns
WHERE phase = 'completed' AND analysis IS NOT NULL
ORDER BY ns, finished_at DESC;

-- name: experiment_gauges
SELECT id, phase, (analysis -> 'fleet' ->> 'series_reduction_percent')::double precision AS reduction
FROM experiments ORDER BY created_at DESC LIMIT 500;

-- name: release_tasks
-- Undo a claim whose long poll lost its client before the answer went out.
UPDATE tasks SET status = 'pending', attempts = GREATEST(attempts - 1, 0), assigned_at = NULL,
       lease_expires_at = NULL, updated_at = now()
WHERE id = ANY(%(ids)s::uuid[]) AND status = 'assigned';

-- name: agents_collector_restarts
SELECT host_id, COALESCE((collector ->> 'restarts')::bigint, 0) AS restarts FROM agents
WHERE jsonb_typeof(collector -> 'restarts') = 'number';

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
-- the measurements of the experiment it was promoted from are the evidence for it).
-- ---------------------------------------------------------------------------------------------------

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

-- =====================================================================================================
-- Agent tokens (migration 0005): per-host tokens, stored as sha256 hashes only.
-- =====================================================================================================

-- name: agent_token_get
SELECT token_hash, revoked_at FROM agent_tokens WHERE host_id = %(host_id)s;

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

-- ---------------------------------------------------------------------------------------------------
-- Database outages (control_plane/app.py, the lease reaper).
-- ---------------------------------------------------------------------------------------------------

-- name: renew_leases_after_outage
-- While the database was out of reach no agent could renew a lease: give every lease a full period
-- from now, so the reaper does not take back work the agents still hold.
UPDATE tasks SET lease_expires_at = GREATEST(lease_expires_at, now() + make_interval(secs => %(lease_seconds)s))
WHERE status IN ('assigned', 'running');

-- =====================================================================================================
-- Failed rollouts (migration 0006, control_plane/rollouts.py): an active deployment whose hosts failed
-- it beyond its max_failed_hosts is marked failed and the namespace's previous deployment restored.
-- =====================================================================================================

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

-- name: try_lock_namespace
-- lock_namespace without waiting: the watcher holds a deployment row lock, so it must never wait for a
-- namespace lock that a deploy or rollback (which lock the namespace first) may hold.
SELECT pg_try_advisory_xact_lock(hashtext('phoenix-namespace:' || %(namespace)s)) AS locked;

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

-- name: cancel_undelivered_deployment_tasks
-- Stop the rollout: tasks no host has received yet are failed with the reason (the experiment driver
-- cancels undelivered starts the same way). Delivered ones are left to finish; the restore covers them.
UPDATE tasks SET status = 'failed', failed_at = now(), updated_at = now(), error = %(reason)s
WHERE deployment_id = %(id)s AND status = 'pending' AND attempts = 0
RETURNING host_id;

-- name: restore_deployment
-- Make a deployment the namespace's active one again after a rollback (never failed automatically then).
UPDATE pipeline_deployments
SET status = 'active', status_reason = %(reason)s, restored_at = now(), updated_at = now()
WHERE id = %(id)s
RETURNING id;

-- name: set_deployment_status_reason
UPDATE pipeline_deployments SET status = %(status)s, status_reason = %(reason)s, updated_at = now()
WHERE id = %(id)s;

-- name: enqueue_restored_deployment
-- Send the restored deployment to the namespace's hosts that may not run it: those whose reported config
-- differs and those that received (or may still receive) the failed one; not to a host that already
-- has it queued or in hand. A host that failed the rollout and restored this config itself is skipped.
INSERT INTO tasks (host_id, type, action, payload, priority, max_attempts, deployment_id, deployment_version)
SELECT a.host_id, 'deployment', 'apply', %(payload)s, %(priority)s, %(max_attempts)s, %(deployment_id)s,
       %(version)s
FROM agents a
WHERE a.namespace = %(namespace)s
  AND (a.config_hash IS DISTINCT FROM %(config_hash)s
       OR a.host_id IN (SELECT host_id FROM tasks
                        WHERE deployment_id = %(failed_id)s
                          AND status IN ('pending', 'assigned', 'running', 'completed')))
  AND a.host_id NOT IN (SELECT host_id FROM tasks
                        WHERE deployment_id = %(deployment_id)s AND status IN ('pending', 'assigned', 'running'))
RETURNING host_id;
