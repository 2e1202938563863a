-- Native PostgreSQL types for analysts and BI tools (issue 8), converted in place: times
-- become timestamptz (the stored text is RFC 3339 UTC, which PostgreSQL parses exactly, to
-- the microsecond), flags become boolean. bytea was already bytea. SQLite keeps its text.
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
