-- Account-wide revocation (issue 20, `--revocation-scope account|all`).
--
-- Whether an opt event was honoured when it was committed is its `sets_status` flag (since
-- migration 6): decided when the event is first stored, a Twilio STOP, a reassigned number's
-- opt-out and an inferred keyword always take part in status, a phrase revocation only under
-- `--honor-revocations`; a better copy of the message that is not a phrase (Twilio's own
-- flag) decides it anew. Migration 6 backfilled it for the rows stored before: a phrase revocation
-- counts as honoured where it held the status then, the one fact the older schema kept. A
-- phrase revocation honoured before migration 6 and overridden by a later START before it ran
-- is therefore not counted as honoured; no stored fact could tell.
--
-- An honoured STOP is what reaches the other scopes of the group at read time. This index
-- holds exactly those, so each status row looks for a later one with a short range read by
-- (subscriber, account), newest first, whatever the size of the store.
CREATE INDEX opt_events_reaching ON opt_events (subscriber, account_sid, occurred_at, event_id)
    WHERE opt_out_type = 'STOP' AND sets_status;
