-- One opt event per message, whichever way it came (issue 19): Kinesis, the Event Streams
-- webhook, the Messaging webhook and replay can each bring the same inbound message.
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
ALTER TABLE opt_events DROP CONSTRAINT opt_events_detection_check;
ALTER TABLE opt_events ADD CONSTRAINT opt_events_detection_check
    CHECK (detection IN ('twilio', 'reassigned', 'keyword', 'phrase'));
ALTER TABLE opt_events
    ADD COLUMN identity TEXT,
    ADD COLUMN time_source TEXT NOT NULL DEFAULT 'twilio'
        CHECK (time_source IN ('twilio', 'received')),
    ADD COLUMN paths TEXT NOT NULL DEFAULT 'kinesis',
    ADD COLUMN sets_status boolean NOT NULL DEFAULT false;

UPDATE opt_events o SET
    identity = CASE WHEN o.message_sid ~ '^[A-Z]{2}[0-9a-fA-F]{32}$' AND r.sid_rank = 1
                    THEN o.message_sid ELSE o.event_id END,
    paths = CASE WHEN o.stream_name = 'replay' THEN 'replay' ELSE 'kinesis' END,
    sets_status = o.opt_out_type IN ('STOP', 'START')
        AND (o.detection <> 'phrase'
             OR EXISTS (SELECT 1 FROM opt_status s WHERE s.event_id = o.event_id))
FROM (SELECT event_id,
             ROW_NUMBER() OVER (PARTITION BY message_sid ORDER BY event_id) AS sid_rank
      FROM opt_events) r
WHERE r.event_id = o.event_id;

ALTER TABLE opt_events ALTER COLUMN identity SET NOT NULL;
CREATE UNIQUE INDEX opt_events_by_identity ON opt_events (identity);
