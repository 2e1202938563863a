-- Times outside years 0001-9999 (issue 17). Versions before it decoded any year chrono parses;
-- SQLite stored it as text (`+10000-01-01T…`, `0000-…`), where `+10000` sorted before every
-- other year, while PostgreSQL refused it. The decoder now dead-letters such records on both
-- backends; this moves the rows stored before to the dead letters the same way PostgreSQL's
-- migration 3 does: the event's row as JSON with the reason (the raw record was never kept
-- for events), the status it set recomputed from the events left (phrase revocations leave
-- status alone, as by default; the sender's check reads the events themselves), and a test
-- event's time dropped. Every time this binary writes has four digits of year, so a stored
-- time is storable exactly when it starts with four digits other than 0000.
INSERT OR IGNORE INTO dead_letters (stream_name, shard_id, sequence_number, partition_key,
                                    reason, data, recorded_at)
SELECT stream_name, shard_id, sequence_number, NULL,
       'bad timestamp: year outside 0001-9999, moved from opt_events by migration 5: '
           || substr(occurred_at, 1, 40),
       CAST(json_object('event_id', event_id, 'opt_out_type', opt_out_type,
                        'inferred', inferred, 'detection', detection, 'rule', rule,
                        'account_sid', account_sid,
                        'messaging_service_sid', messaging_service_sid, 'sender', sender,
                        'subscriber', subscriber, 'scope', scope, 'body', body,
                        'message_sid', message_sid, 'occurred_at', occurred_at,
                        'schema_version', schema_version, 'stream_name', stream_name,
                        'shard_id', shard_id, 'sequence_number', sequence_number,
                        'recorded_at', recorded_at) AS BLOB),
       recorded_at
FROM opt_events
WHERE occurred_at NOT GLOB '[0-9][0-9][0-9][0-9]-*' OR occurred_at GLOB '0000-*';

CREATE TEMP TABLE optout_restatus AS
SELECT account_sid, scope, subscriber FROM opt_status
WHERE changed_at NOT GLOB '[0-9][0-9][0-9][0-9]-*' OR changed_at GLOB '0000-*';
DELETE FROM opt_status
WHERE (account_sid, scope, subscriber) IN (SELECT account_sid, scope, subscriber FROM optout_restatus);
DELETE FROM opt_events
WHERE occurred_at NOT GLOB '[0-9][0-9][0-9][0-9]-*' OR occurred_at GLOB '0000-*';
INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, sender, status,
                        changed_at, event_id)
SELECT account_sid, scope, subscriber, messaging_service_sid, sender,
       CASE opt_out_type WHEN 'STOP' THEN 'opted_out' ELSE 'opted_in' END, occurred_at, event_id
FROM (SELECT e.*, ROW_NUMBER() OVER (PARTITION BY e.account_sid, e.scope, e.subscriber
                                     ORDER BY e.occurred_at DESC, e.event_id DESC) AS rn
      FROM opt_events e
      WHERE (e.account_sid, e.scope, e.subscriber) IN
            (SELECT account_sid, scope, subscriber FROM optout_restatus)
        AND e.opt_out_type IN ('STOP', 'START') AND e.detection <> 'phrase')
WHERE rn = 1;
DROP TABLE optout_restatus;

UPDATE sink_test_events SET occurred_at = NULL
WHERE occurred_at NOT GLOB '[0-9][0-9][0-9][0-9]-*' OR occurred_at GLOB '0000-*';
