-- Native PostgreSQL types for analysts and BI tools (issue 8), converted in place: times
-- become timestamptz (the stored text is RFC 3339 UTC, which PostgreSQL parses exactly, to
-- the microsecond), flags become boolean. bytea was already bytea. SQLite keeps its text.
--
-- First, the rows whose times PostgreSQL cannot read (issue 17). Versions before it decoded any
-- year chrono parses and stored it as text (`+10000-01-01T…`, `0000-…`); the conversion below
-- then failed on them, the store stayed at version 2, and every query command refused it until
-- someone edited SQL by hand. This is fixed here, in migration 3 itself, and not in a later one,
-- because the failure is this migration's: a database holding such rows never got past it (so
-- none that did is changed by this), and no later migration runs before it. Such an event goes
-- to the dead letters (its row as JSON, with the reason: the raw record was never kept for
-- events), the status it set is recomputed from the events left, and a test event keeps no
-- time. Years outside 0001-9999 go too, readable or not: the decoder refuses them now, on both
-- backends.
CREATE FUNCTION pg_temp.optout_storable_time(t text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF t IS NULL THEN
        RETURN true;
    END IF;
    RETURN extract(year FROM (t::timestamptz AT TIME ZONE 'UTC')) BETWEEN 1 AND 9999;
EXCEPTION WHEN others THEN
    RETURN false;
END $$;

INSERT INTO dead_letters (stream_name, shard_id, sequence_number, partition_key, reason, data,
                          recorded_at)
SELECT e.stream_name, e.shard_id, e.sequence_number, NULL,
       'bad timestamp: year outside 0001-9999, moved from opt_events by migration 3: '
           || left(e.occurred_at, 40),
       convert_to(row_to_json(e)::text, 'UTF8'), e.recorded_at
FROM opt_events e
WHERE NOT pg_temp.optout_storable_time(e.occurred_at)
ON CONFLICT (stream_name, shard_id, sequence_number) DO NOTHING;

-- The status rows those events set (their time is the event's), recomputed below from the
-- events left with the consumer's default rule (phrase revocations leave status alone; the
-- sender's check reads the events themselves, so a revocation still counts there).
CREATE TEMP TABLE optout_restatus ON COMMIT DROP AS
SELECT account_sid, scope, subscriber FROM opt_status
WHERE NOT pg_temp.optout_storable_time(changed_at);
DELETE FROM opt_status s USING optout_restatus r
WHERE s.account_sid = r.account_sid AND s.scope = r.scope AND s.subscriber = r.subscriber;
DELETE FROM opt_events WHERE NOT pg_temp.optout_storable_time(occurred_at);
INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, sender, status,
                        changed_at, event_id)
SELECT DISTINCT ON (e.account_sid, e.scope, e.subscriber)
       e.account_sid, e.scope, e.subscriber, e.messaging_service_sid, e.sender,
       CASE e.opt_out_type WHEN 'STOP' THEN 'opted_out' ELSE 'opted_in' END,
       e.occurred_at, e.event_id
FROM opt_events e
JOIN optout_restatus r
  ON e.account_sid = r.account_sid AND e.scope = r.scope AND e.subscriber = r.subscriber
WHERE e.opt_out_type IN ('STOP', 'START') AND e.detection <> 'phrase'
ORDER BY e.account_sid, e.scope, e.subscriber, e.occurred_at DESC, e.event_id DESC;

UPDATE sink_test_events SET occurred_at = NULL
WHERE NOT pg_temp.optout_storable_time(occurred_at);

DROP FUNCTION pg_temp.optout_storable_time(text);

ALTER TABLE opt_events
    ALTER COLUMN occurred_at TYPE timestamptz USING occurred_at::timestamptz,
    ALTER COLUMN recorded_at TYPE timestamptz USING recorded_at::timestamptz,
    ALTER COLUMN inferred DROP DEFAULT,
    ALTER COLUMN inferred TYPE boolean USING inferred <> 0,
    ALTER COLUMN inferred SET DEFAULT false;
ALTER TABLE opt_status
    ALTER COLUMN changed_at TYPE timestamptz USING changed_at::timestamptz;
ALTER TABLE checkpoints
    ALTER COLUMN finished DROP DEFAULT,
    ALTER COLUMN finished TYPE boolean USING finished <> 0,
    ALTER COLUMN finished SET DEFAULT false,
    ALTER COLUMN updated_at TYPE timestamptz USING updated_at::timestamptz;
ALTER TABLE dead_letters
    ALTER COLUMN recorded_at TYPE timestamptz USING recorded_at::timestamptz;
ALTER TABLE sink_test_events
    ALTER COLUMN occurred_at TYPE timestamptz USING occurred_at::timestamptz,
    ALTER COLUMN recorded_at TYPE timestamptz USING recorded_at::timestamptz;

-- The events list pages by (occurred_at, event_id): one index serves the order and the
-- keyset condition (and still every query by time alone).
CREATE INDEX opt_events_by_time_id ON opt_events (occurred_at, event_id);
DROP INDEX opt_events_by_time;

-- Where analysts start. Every number opted out now, per account and scope:
CREATE VIEW current_opt_outs AS
SELECT account_sid, scope, messaging_service_sid, sender, subscriber,
       changed_at AS opted_out_at, event_id
FROM opt_status
WHERE status = 'opted_out';

-- Opt events per UTC day, account, scope and type (STOP, START, HELP) and how they were
-- recognised (twilio, keyword, phrase):
CREATE VIEW opt_events_daily AS
SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, account_sid, scope, opt_out_type,
       detection, count(*) AS events
FROM opt_events
GROUP BY 1, 2, 3, 4, 5;
