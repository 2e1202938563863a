-- One opt event per message, whichever way it came (issue 19): Kinesis, the Event Streams
-- webhook, the Messaging webhook and replay can each bring the same inbound message.
-- SQLite cannot change a CHECK constraint in place, so opt_events is rebuilt (in the
-- migration's transaction) with:
--   identity     the message SID when there is one (two capital letters and 32 hex digits),
--                else the CloudEvent id: the key copies of a message are merged on. Where two
--                existing rows share a SID (two subscriptions of different schema versions),
--                the one with the smaller event id takes it and the others keep their event id.
--   time_source  'twilio' (data.timestamp) or 'received' (the Messaging webhook's receive time)
--   paths        the ways in that brought it: kinesis, events_webhook, messaging_webhook, replay
--   sets_status  whether it takes part in status (decided when first stored; a phrase only
--                with --honor-revocations). Existing phrase rows are marked only where they
--                hold the status now, the one fact the old schema kept.
--   detection    gains 'reassigned' (Twilio's reassigned-number opt-outs).
DROP VIEW opt_events_daily;

CREATE TABLE opt_events_new (
    event_id              TEXT PRIMARY KEY,
    identity              TEXT NOT NULL UNIQUE,
    opt_out_type          TEXT NOT NULL CHECK (opt_out_type IN ('STOP', 'START', 'HELP')),
    inferred              INTEGER NOT NULL DEFAULT 0,
    account_sid           TEXT NOT NULL,
    messaging_service_sid TEXT,
    sender                TEXT NOT NULL,
    subscriber            TEXT NOT NULL,
    scope                 TEXT NOT NULL,
    body                  TEXT,
    message_sid           TEXT,
    occurred_at           TEXT NOT NULL,
    schema_version        INTEGER,
    stream_name           TEXT NOT NULL,
    shard_id              TEXT NOT NULL,
    sequence_number       TEXT NOT NULL,
    recorded_at           TEXT NOT NULL,
    detection             TEXT NOT NULL DEFAULT 'twilio'
        CHECK (detection IN ('twilio', 'reassigned', 'keyword', 'phrase')),
    rule                  TEXT,
    time_source           TEXT NOT NULL DEFAULT 'twilio'
        CHECK (time_source IN ('twilio', 'received')),
    paths                 TEXT NOT NULL DEFAULT 'kinesis',
    sets_status           INTEGER NOT NULL DEFAULT 0
);

INSERT INTO opt_events_new (event_id, identity, opt_out_type, inferred, account_sid,
    messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at,
    schema_version, stream_name, shard_id, sequence_number, recorded_at, detection, rule,
    time_source, paths, sets_status)
SELECT event_id,
       CASE WHEN length(message_sid) = 34 AND substr(message_sid, 1, 2) GLOB '[A-Z][A-Z]'
                 AND NOT substr(message_sid, 3) GLOB '*[^0-9a-fA-F]*' AND sid_rank = 1
            THEN message_sid ELSE event_id END,
       opt_out_type, inferred, account_sid, messaging_service_sid, sender, subscriber, scope,
       body, message_sid, occurred_at, schema_version, stream_name, shard_id, sequence_number,
       recorded_at, detection, rule, 'twilio',
       CASE WHEN stream_name = 'replay' THEN 'replay' ELSE 'kinesis' END,
       CASE WHEN opt_out_type IN ('STOP', 'START')
                 AND (detection <> 'phrase'
                      OR event_id IN (SELECT event_id FROM opt_status)) THEN 1 ELSE 0 END
FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY message_sid ORDER BY event_id) AS sid_rank
      FROM opt_events);

DROP TABLE opt_events;
ALTER TABLE opt_events_new RENAME TO opt_events;

CREATE INDEX opt_events_by_subscriber ON opt_events (subscriber, occurred_at);
CREATE INDEX opt_events_by_key ON opt_events (account_sid, scope, subscriber, occurred_at);
CREATE INDEX opt_events_by_time_id ON opt_events (occurred_at, event_id);

CREATE VIEW opt_events_daily AS
SELECT substr(occurred_at, 1, 10) AS day, account_sid, scope, opt_out_type, detection,
       count(*) AS events
FROM opt_events
GROUP BY 1, 2, 3, 4, 5;
