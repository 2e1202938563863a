-- Opt events per day (UTC), scope, type and detection, kept by triggers in the same
-- transaction as the events themselves, for the web console's activity chart: reading a month
-- is a few hundred rows whatever the number of events, where the opt_events_daily view scans
-- them all. Triggers rather than code in the commit path, so that every way an event row is
-- written, merged or removed (including migrations) keeps the rollup true:
-- - a re-read or duplicate is not inserted (ON CONFLICT DO NOTHING), so it fires nothing;
-- - a merge that changes an event's stored time (or scope, type, detection) moves its count;
-- - a deleted event takes its count away.
CREATE TABLE opt_events_by_day (
    day          TEXT NOT NULL,               -- YYYY-MM-DD of occurred_at (UTC)
    scope        TEXT NOT NULL,
    opt_out_type TEXT NOT NULL,
    detection    TEXT NOT NULL,
    events       INTEGER NOT NULL,
    PRIMARY KEY (day, scope, opt_out_type, detection)
) WITHOUT ROWID;
-- One scope's days (the chart of one scope).
CREATE INDEX opt_events_by_day_scope ON opt_events_by_day (scope, day);

-- The same without the scope: a few rows a day however many scopes, for the chart of all.
CREATE TABLE opt_events_by_day_all (
    day          TEXT NOT NULL,
    opt_out_type TEXT NOT NULL,
    detection    TEXT NOT NULL,
    events       INTEGER NOT NULL,
    PRIMARY KEY (day, opt_out_type, detection)
) WITHOUT ROWID;

INSERT INTO opt_events_by_day (day, scope, opt_out_type, detection, events)
SELECT substr(occurred_at, 1, 10), scope, opt_out_type, detection, COUNT(*)
FROM opt_events
GROUP BY substr(occurred_at, 1, 10), scope, opt_out_type, detection;

INSERT INTO opt_events_by_day_all (day, opt_out_type, detection, events)
SELECT day, opt_out_type, detection, SUM(events)
FROM opt_events_by_day
GROUP BY day, opt_out_type, detection;

CREATE TRIGGER opt_events_by_day_insert AFTER INSERT ON opt_events
BEGIN
    INSERT INTO opt_events_by_day (day, scope, opt_out_type, detection, events)
    VALUES (substr(NEW.occurred_at, 1, 10), NEW.scope, NEW.opt_out_type, NEW.detection, 1)
    ON CONFLICT (day, scope, opt_out_type, detection) DO UPDATE SET events = events + 1;
    INSERT INTO opt_events_by_day_all (day, opt_out_type, detection, events)
    VALUES (substr(NEW.occurred_at, 1, 10), NEW.opt_out_type, NEW.detection, 1)
    ON CONFLICT (day, opt_out_type, detection) DO UPDATE SET events = events + 1;
END;

CREATE TRIGGER opt_events_by_day_delete AFTER DELETE ON opt_events
BEGIN
    UPDATE opt_events_by_day SET events = events - 1
    WHERE day = substr(OLD.occurred_at, 1, 10) AND scope = OLD.scope
      AND opt_out_type = OLD.opt_out_type AND detection = OLD.detection;
    UPDATE opt_events_by_day_all SET events = events - 1
    WHERE day = substr(OLD.occurred_at, 1, 10)
      AND opt_out_type = OLD.opt_out_type AND detection = OLD.detection;
END;

CREATE TRIGGER opt_events_by_day_update
AFTER UPDATE OF occurred_at, scope, opt_out_type, detection ON opt_events
WHEN substr(OLD.occurred_at, 1, 10) IS NOT substr(NEW.occurred_at, 1, 10)
  OR OLD.scope IS NOT NEW.scope OR OLD.opt_out_type IS NOT NEW.opt_out_type
  OR OLD.detection IS NOT NEW.detection
BEGIN
    UPDATE opt_events_by_day SET events = events - 1
    WHERE day = substr(OLD.occurred_at, 1, 10) AND scope = OLD.scope
      AND opt_out_type = OLD.opt_out_type AND detection = OLD.detection;
    UPDATE opt_events_by_day_all SET events = events - 1
    WHERE day = substr(OLD.occurred_at, 1, 10)
      AND opt_out_type = OLD.opt_out_type AND detection = OLD.detection;
    INSERT INTO opt_events_by_day (day, scope, opt_out_type, detection, events)
    VALUES (substr(NEW.occurred_at, 1, 10), NEW.scope, NEW.opt_out_type, NEW.detection, 1)
    ON CONFLICT (day, scope, opt_out_type, detection) DO UPDATE SET events = events + 1;
    INSERT INTO opt_events_by_day_all (day, opt_out_type, detection, events)
    VALUES (substr(NEW.occurred_at, 1, 10), NEW.opt_out_type, NEW.detection, 1)
    ON CONFLICT (day, opt_out_type, detection) DO UPDATE SET events = events + 1;
END;
