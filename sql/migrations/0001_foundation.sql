-- Phoenix foundation: agents, the task queue, pipeline deployments and the event log.

CREATE TABLE agents (
    host_id         text PRIMARY KEY,
    namespace       text NOT NULL DEFAULT 'default',
    labels          jsonb NOT NULL DEFAULT '{}'::jsonb,
    version         text,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'healthy',
    facts           jsonb NOT NULL DEFAULT '{}'::jsonb,
    collector       jsonb NOT NULL DEFAULT '{}'::jsonb,
    config_hash     text,
    token_hash      text
);
CREATE INDEX agents_namespace ON agents (namespace);

CREATE TABLE pipeline_deployments (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    namespace       text NOT NULL,
    template        text NOT NULL,
    parameters      jsonb NOT NULL DEFAULT '{}'::jsonb,
    status          text NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'superseded', 'rolled_back')),
    previous_id     text REFERENCES pipeline_deployments (id),
    experiment_id   text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pipeline_deployments_namespace ON pipeline_deployments (namespace, created_at DESC);
-- At most one active deployment per namespace.
CREATE UNIQUE INDEX pipeline_deployments_one_active ON pipeline_deployments (namespace) WHERE status = 'active';

CREATE TABLE pipeline_deployment_versions (
    deployment_id   text NOT NULL REFERENCES pipeline_deployments (id),
    version         integer NOT NULL,
    config_yaml     text NOT NULL,
    config_hash     text NOT NULL,
    rendered        jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (deployment_id, version)
);

CREATE TABLE tasks (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    host_id          text NOT NULL,
    type             text NOT NULL CHECK (type IN ('deployment', 'metrics', 'experiment', 'health')),
    action           text NOT NULL,
    payload          jsonb NOT NULL DEFAULT '{}'::jsonb,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'assigned', 'running', 'completed', 'failed')),
    priority         integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    lease_expires_at timestamptz,
    experiment_id    text,
    deployment_id    text,
    deployment_version integer,
    created_at       timestamptz NOT NULL DEFAULT now(),
    assigned_at      timestamptz,
    started_at       timestamptz,
    completed_at     timestamptz,
    failed_at        timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    result           jsonb,
    error            text
);
-- The claim path: a host's pending tasks in delivery order.
CREATE INDEX tasks_claim ON tasks (host_id, priority DESC, created_at ASC) WHERE status = 'pending';
-- The lease reaper's path.
CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE status IN ('assigned', 'running');
CREATE INDEX tasks_experiment ON tasks (experiment_id) WHERE experiment_id IS NOT NULL;

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    topic       text NOT NULL,
    kind        text NOT NULL,
    subject     text,
    reason      text,
    data        jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX events_subject ON events (subject, id);

-- Wake long polls on enqueue: one NOTIFY per host for small batches, one wildcard for a large fan-out,
-- so that enqueuing for 100,000 hosts does not queue 100,000 notifications. (The lease reaper
-- notifies for the tasks it returns to the queue; claims and reports need no wake-up.)
CREATE FUNCTION phoenix_notify_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM (SELECT 1 FROM new_rows LIMIT 101) s) > 100 THEN
        PERFORM pg_notify('phoenix_tasks', '*');
    ELSE
        PERFORM pg_notify('phoenix_tasks', h) FROM (SELECT DISTINCT host_id AS h FROM new_rows) s;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_notify_insert AFTER INSERT ON tasks
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION phoenix_notify_tasks();
