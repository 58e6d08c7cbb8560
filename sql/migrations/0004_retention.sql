-- Retention (control_plane/retention.py): the indexes its batched deletes walk, oldest first, and the
-- tally of pruned tasks that keeps phoenix_tasks_finished_total from going backwards.

-- Final tasks by the time they finished (a final task is never updated again).
CREATE INDEX tasks_finished_at ON tasks (updated_at) WHERE status IN ('completed', 'failed');
CREATE INDEX events_ts ON events (ts);
CREATE INDEX experiment_measurements_received_at ON experiment_measurements (received_at);

-- Finished tasks retention deleted, per type and status: the finished-task counter is what the tasks
-- table holds plus this, so pruning never makes it go backwards (rate() would read that as a reset).
CREATE TABLE tasks_pruned (
    type    text NOT NULL,
    status  text NOT NULL,
    n       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (type, status)
);
