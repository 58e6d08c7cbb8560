-- Experiments, their measurements and the fleet's current emissions (control_plane/stores/experiments.py).
-- Parameters are psycopg named placeholders.

-- name: insert_experiment
INSERT INTO experiments (id, name, spec, candidate_destination)
VALUES (%(id)s, %(name)s, %(spec)s, %(spec)s::jsonb ->> 'candidate_destination')
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
-- phases: control_plane.phases.ACTIVE (the partial index experiments_active covers the same set).
WHERE phase = ANY(%(phases)s::text[])
ORDER BY phase_changed_at
LIMIT 20
FOR UPDATE SKIP LOCKED;

-- name: set_experiment_phase
UPDATE experiments
SET phase = %(phase)s, phase_reason = %(reason)s, phase_changed_at = now(),
    started_at = CASE WHEN %(stamp)s::text = 'started_at' THEN now() ELSE started_at END,
    running_at = CASE WHEN %(stamp)s::text = 'running_at' THEN now() ELSE running_at END,
    analyzing_at = CASE WHEN %(stamp)s::text = 'analyzing_at' THEN now() ELSE analyzing_at END,
    finished_at = CASE WHEN %(stamp)s::text = 'finished_at' THEN now() ELSE finished_at END
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
-- Agents seen within %(seen_within)s seconds: a decommissioned VM that went silent is no target.
SELECT host_id FROM agents
WHERE (namespace = ANY(%(namespaces)s::text[]) OR host_id = ANY(%(hosts)s::text[]))
  AND last_seen_at > now() - make_interval(secs => %(seen_within)s)
ORDER BY host_id;

-- name: experiment_task_states
-- Per host, the state of the experiment's latest start task.
SELECT DISTINCT ON (host_id) host_id, status, error, attempts, started_at, completed_at, result
FROM tasks
WHERE experiment_id = %(id)s AND type = 'experiment' AND action = 'start'
ORDER BY host_id, created_at DESC;

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
SELECT host_id, variant, pipeline, ts, received_at, phase, represents, sample
FROM experiment_measurements
WHERE experiment_id = %(id)s
ORDER BY received_at;

-- name: experiment_host_measurements
-- One host's samples in time order: the analysis and the results read an experiment host by host, so
-- what is held in memory at once is one host's (bounded by compaction), not the whole fleet's. The
-- per-process CPU counters are left in the database: the analysis uses their rates, and they are a
-- third of a sample's size.
SELECT host_id, variant, pipeline, ts, received_at, phase, represents,
       sample - 'process_cpu_seconds_total' AS sample
FROM experiment_measurements
WHERE experiment_id = %(id)s AND host_id = %(host_id)s
ORDER BY ts, id;

-- name: experiment_latest_samples
-- Per host and arm, the figures of the sample received last, and how many rows the experiment holds.
SELECT DISTINCT ON (host_id, variant)
       host_id, variant, ts,
       sample -> 'active_series' AS active_series,
       sample -> 'billed_series' AS billed_series,
       sample -> 'datapoints_per_minute' AS datapoints_per_minute,
       sample -> 'datapoints_per_second' AS datapoints_per_second
FROM experiment_measurements
WHERE experiment_id = %(id)s
ORDER BY host_id, variant, received_at DESC, id DESC;

-- name: experiments_to_compact
-- Experiments that may hold measurements older than the full-resolution horizon not yet thinned: begun
-- before it, and not finished long before it (those were thinned after they finished).
SELECT id, hosts FROM experiments
WHERE started_at < now() - make_interval(secs => %(full)s)
  AND (finished_at IS NULL OR finished_at > now() - make_interval(secs => %(full)s + %(slack)s))
ORDER BY started_at;

-- name: compact_measurements
-- One host of one experiment: rows older than the horizon (cut at a bucket boundary, so no bucket is
-- thinned while it still fills) keep, per arm, phase and bucket, the earliest row, which then counts
-- for every sample of its bucket. Both arms are sampled at the same moment, so their earliest rows
-- still pair.
WITH binned AS (
    SELECT id, host_id, variant, phase, ts, represents,
           date_bin(make_interval(secs => %(bucket)s), ts, timestamptz '1970-01-01 00:00:00+00') AS bucket
    FROM experiment_measurements
    WHERE experiment_id = %(id)s AND host_id = %(host_id)s
      AND ts < date_bin(make_interval(secs => %(bucket)s), now() - make_interval(secs => %(full)s),
                        timestamptz '1970-01-01 00:00:00+00')
), ranked AS (
    SELECT id, represents,
           row_number() OVER (PARTITION BY variant, phase, bucket ORDER BY ts, id) AS n,
           sum(represents) OVER (PARTITION BY variant, phase, bucket) AS total
    FROM binned
), deleted AS (
    DELETE FROM experiment_measurements m USING ranked r
    WHERE m.id = r.id AND r.n > 1
    RETURNING m.id
), kept AS (
    UPDATE experiment_measurements m SET represents = r.total
    FROM ranked r
    WHERE m.id = r.id AND r.n = 1 AND r.total <> r.represents
    RETURNING m.id
)
SELECT (SELECT count(*) FROM deleted) AS deleted, (SELECT count(*) FROM kept) AS kept;

-- name: upsert_emission
INSERT INTO host_emissions (host_id, variant, pipeline, sample)
SELECT %(host_id)s, s ->> 'variant', s ->> 'pipeline', s
FROM jsonb_array_elements(%(samples)s::jsonb) AS s
ON CONFLICT (host_id, variant) DO UPDATE
SET pipeline = EXCLUDED.pipeline, sample = EXCLUDED.sample, reported_at = now();

-- name: current_emissions
SELECT e.host_id, e.variant, e.pipeline, e.reported_at, e.sample, a.namespace
FROM host_emissions e JOIN agents a USING (host_id)
WHERE e.reported_at > now() - make_interval(secs => %(max_age_seconds)s);

-- name: latest_completed_experiments
SELECT DISTINCT ON (ns) ns AS namespace, id, name, spec, analysis, finished_at
FROM experiments, LATERAL jsonb_array_elements_text(spec -> 'target_namespaces') AS ns
WHERE phase = %(phase)s AND analysis IS NOT NULL
ORDER BY ns, finished_at DESC;

-- name: experiment_gauges
SELECT id, phase, (analysis -> 'fleet' ->> 'series_reduction_percent')::double precision AS reduction
FROM experiments ORDER BY created_at DESC LIMIT 500;
