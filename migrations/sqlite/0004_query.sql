-- The events list pages by (occurred_at, event_id): one index serves the order and the
-- keyset condition (and still every query by time alone). Times stay fixed-width RFC 3339
-- text, whose order is time order.
CREATE INDEX opt_events_by_time_id ON opt_events (occurred_at, event_id);
DROP INDEX opt_events_by_time;

-- The same starting points as on PostgreSQL (there with native types).
CREATE VIEW current_opt_outs AS
SELECT account_sid, scope, messaging_service_sid, sender, subscriber,
       changed_at AS opted_out_at, event_id
FROM opt_status
WHERE status = 'opted_out';

CREATE VIEW opt_events_daily AS
SELECT substr(occurred_at, 1, 10) AS day, account_sid, scope, opt_out_type, detection,
       count(*) AS events
FROM opt_events
GROUP BY 1, 2, 3, 4, 5;
