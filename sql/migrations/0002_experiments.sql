-- A/B experiments, the measurements agents report for them, and per-host emission snapshots.

CREATE TABLE experiments (
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    spec                jsonb NOT NULL,
    phase               text NOT NULL DEFAULT 'pending'
                        CHECK (phase IN ('pending', 'deploying', 'warming_up', 'running', 'analyzing',
                                         'completed', 'failed', 'stopped')),
    phase_reason        text,
    phase_changed_at    timestamptz NOT NULL DEFAULT now(),
    hosts               text[] NOT NULL DEFAULT '{}',
    rendered            jsonb,
    analysis            jsonb,
    promoted_deployments text[] NOT NULL DEFAULT '{}',
    rolled_back_at      timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    running_at          timestamptz,
    analyzing_at        timestamptz,
    finished_at         timestamptz
);
CREATE INDEX experiments_active ON experiments (phase)
    WHERE phase IN ('deploying', 'warming_up', 'running', 'analyzing');

CREATE TABLE experiment_measurements (
    id              bigserial PRIMARY KEY,
    experiment_id   text NOT NULL REFERENCES experiments (id) ON DELETE CASCADE,
    host_id         text NOT NULL,
    variant         text NOT NULL,
    pipeline        text,
    ts              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    phase           text NOT NULL,
    sample          jsonb NOT NULL
);
CREATE INDEX experiment_measurements_lookup ON experiment_measurements (experiment_id, host_id, variant, received_at);

-- What each host's collector emits now (the agent measures its own exporters), for the cost flow.
CREATE TABLE host_emissions (
    host_id         text NOT NULL,
    variant         text NOT NULL,
    pipeline        text,
    reported_at     timestamptz NOT NULL DEFAULT now(),
    sample          jsonb NOT NULL,
    PRIMARY KEY (host_id, variant)
);
