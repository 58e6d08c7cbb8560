-- Fleet scale: every task that becomes pending again (the lease reaper, a released claim, an operator's
-- UPDATE) wakes its host's polls, as an insert does. With this, a control plane that saw no NOTIFY for
-- a host since its last empty claim knows the host has no work without asking the database, so idle
-- long polls cost the database nothing however many agents wait (control_plane/dispatch.py).
CREATE FUNCTION phoenix_notify_requeued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('phoenix_tasks', h)
    FROM (SELECT DISTINCT n.host_id AS h
          FROM new_rows n JOIN old_rows o ON o.id = n.id
          WHERE n.status = 'pending' AND o.status <> 'pending') s;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tasks_notify_requeued AFTER UPDATE ON tasks
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION phoenix_notify_requeued();
