-- Destinations (control_plane/stores/destinations.py): named backends a namespace's pipeline ships to.
-- Header values are secrets: stored only as Fernet ciphertext (headers_sealed), encrypted with the API's
-- secrets_key; header_names keeps their names so that reads can show them masked.
CREATE TABLE destinations (
    name text PRIMARY KEY,
    type text NOT NULL CHECK (type IN ('otlp_grpc', 'otlp_http', 'prometheus_remote_write')),
    endpoint text NOT NULL,
    header_names text[] NOT NULL DEFAULT '{}',
    headers_sealed text,
    tls jsonb NOT NULL DEFAULT '{}'::jsonb,
    compression text NOT NULL,
    timeout_seconds double precision NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Where a deployment ships (NULL: measured locally only). No foreign key: an old, superseded deployment
-- keeps the name of a destination deleted since; its version row holds everything it needs to run again.
ALTER TABLE pipeline_deployments ADD COLUMN destination text;
CREATE INDEX pipeline_deployments_destination_active ON pipeline_deployments (destination)
    WHERE status = 'active';
-- The destination's headers as the deployment was rendered with them (sealed): delivered, decrypted, to
-- each agent with the task, so a later change of the destination does not alter a running deployment.
ALTER TABLE pipeline_deployment_versions ADD COLUMN secret_files jsonb NOT NULL DEFAULT '{}'::jsonb;

-- Where an experiment's candidate ships (NULL: in shadow, measured and not shipped).
ALTER TABLE experiments ADD COLUMN candidate_destination text;
