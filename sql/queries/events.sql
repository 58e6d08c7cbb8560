-- The audit log (control_plane/stores/events.py).
-- Parameters are psycopg named placeholders.

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
