-- A rollout that fails on its hosts is marked failed (control_plane/rollouts.py) and the namespace's
-- previous deployment restored.

ALTER TABLE pipeline_deployments DROP CONSTRAINT pipeline_deployments_status_check;
ALTER TABLE pipeline_deployments ADD CONSTRAINT pipeline_deployments_status_check
    CHECK (status IN ('active', 'superseded', 'rolled_back', 'failed'));

-- How many hosts may fail the rollout before the deployment is failed (0: any host). Deployments made
-- before this migration keep NULL: they are not watched, so that an upgrade does not roll back a
-- namespace over failures that were accepted long ago.
ALTER TABLE pipeline_deployments ADD COLUMN max_failed_hosts integer CHECK (max_failed_hosts >= 0);
ALTER TABLE pipeline_deployments ALTER COLUMN max_failed_hosts SET DEFAULT 0;
-- Why the deployment has its status, when a watcher or an operator said (shown by GET and the CLI).
ALTER TABLE pipeline_deployments ADD COLUMN status_reason text;
-- When a rollback (an operator's or the watcher's) made this deployment active again: a restored
-- deployment is never failed automatically, so one failure cannot walk a namespace back through its
-- whole history; rolling back further is an operator's call.
ALTER TABLE pipeline_deployments ADD COLUMN restored_at timestamptz;

-- A deployment's tasks by status: the watcher's count of failed hosts, the restore's look-up of hosts
-- that hold the failed config, and the task counts every deployment view shows.
CREATE INDEX tasks_deployment ON tasks (deployment_id, status) WHERE deployment_id IS NOT NULL;
