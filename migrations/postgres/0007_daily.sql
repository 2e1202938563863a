-- Opt events per day (UTC), scope, type and detection, kept by triggers in the same
-- transaction as the events themselves, for the web console's activity chart: reading a month
-- is a few hundred rows whatever the number of events, where the opt_events_daily view scans
-- them all. Triggers rather than code in the commit path, so that every way an event row is
-- written, merged or removed keeps the rollup true:
-- - a re-read or duplicate is not inserted (ON CONFLICT DO NOTHING), so it fires nothing;
-- - a merge that changes an event's stored time (or scope, type, detection) moves its count;
-- - a deleted event takes its count away.
-- Several instances commit at once: each connection counts into one of 16 slots (by backend
-- pid), so concurrent commits of the same day and scope rarely wait on one counter row (and a
-- deadlock between two that do is retried like any other). Readers sum the slots.
CREATE TABLE opt_events_by_day (
    day          TEXT NOT NULL,               -- YYYY-MM-DD of occurred_at (UTC)
    scope        TEXT NOT NULL,
    opt_out_type TEXT NOT NULL,
    detection    TEXT NOT NULL,
    slot         SMALLINT NOT NULL,
    events       BIGINT NOT NULL,
    PRIMARY KEY (day, scope, opt_out_type, detection, slot)
);
-- One scope's days (the chart of one scope).
CREATE INDEX opt_events_by_day_scope ON opt_events_by_day (scope, day);

-- The same without the scope: a few rows a day however many scopes, for the chart of all.
CREATE TABLE opt_events_by_day_all (
    day          TEXT NOT NULL,
    opt_out_type TEXT NOT NULL,
    detection    TEXT NOT NULL,
    slot         SMALLINT NOT NULL,
    events       BIGINT NOT NULL,
    PRIMARY KEY (day, opt_out_type, detection, slot)
);

INSERT INTO opt_events_by_day (day, scope, opt_out_type, detection, slot, events)
SELECT to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), scope, opt_out_type, detection,
       0, COUNT(*)
FROM opt_events
GROUP BY 1, 2, 3, 4;

INSERT INTO opt_events_by_day_all (day, opt_out_type, detection, slot, events)
SELECT day, opt_out_type, detection, 0, SUM(events)
FROM opt_events_by_day
GROUP BY day, opt_out_type, detection;

CREATE FUNCTION optout_count_by_day() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s SMALLINT := pg_backend_pid() % 16;
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO opt_events_by_day (day, scope, opt_out_type, detection, slot, events)
        VALUES (to_char(OLD.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), OLD.scope,
                OLD.opt_out_type, OLD.detection, s, -1)
        ON CONFLICT (day, scope, opt_out_type, detection, slot)
        DO UPDATE SET events = opt_events_by_day.events - 1;
        INSERT INTO opt_events_by_day_all (day, opt_out_type, detection, slot, events)
        VALUES (to_char(OLD.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), OLD.opt_out_type,
                OLD.detection, s, -1)
        ON CONFLICT (day, opt_out_type, detection, slot)
        DO UPDATE SET events = opt_events_by_day_all.events - 1;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        INSERT INTO opt_events_by_day (day, scope, opt_out_type, detection, slot, events)
        VALUES (to_char(NEW.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), NEW.scope,
                NEW.opt_out_type, NEW.detection, s, 1)
        ON CONFLICT (day, scope, opt_out_type, detection, slot)
        DO UPDATE SET events = opt_events_by_day.events + 1;
        INSERT INTO opt_events_by_day_all (day, opt_out_type, detection, slot, events)
        VALUES (to_char(NEW.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), NEW.opt_out_type,
                NEW.detection, s, 1)
        ON CONFLICT (day, opt_out_type, detection, slot)
        DO UPDATE SET events = opt_events_by_day_all.events + 1;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER opt_events_by_day_insert_delete AFTER INSERT OR DELETE ON opt_events
FOR EACH ROW EXECUTE FUNCTION optout_count_by_day();

CREATE TRIGGER opt_events_by_day_update
AFTER UPDATE OF occurred_at, scope, opt_out_type, detection ON opt_events
FOR EACH ROW
WHEN (to_char(OLD.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
          IS DISTINCT FROM to_char(NEW.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')
      OR OLD.scope IS DISTINCT FROM NEW.scope
      OR OLD.opt_out_type IS DISTINCT FROM NEW.opt_out_type
      OR OLD.detection IS DISTINCT FROM NEW.detection)
EXECUTE FUNCTION optout_count_by_day();
