-- How each opt event was recognised, and the revocation rule that matched (issue 9).
-- detection: 'twilio' (optOutType set), 'keyword' (--infer-keywords), 'phrase' (revocation
-- phrase detection); existing rows take 'keyword' where inferred, else 'twilio'.
ALTER TABLE opt_events ADD COLUMN detection TEXT NOT NULL DEFAULT 'twilio'
    CHECK (detection IN ('twilio', 'keyword', 'phrase'));
ALTER TABLE opt_events ADD COLUMN rule TEXT;  -- e.g. 'builtin-2026.1:stop-texting'; phrase only
UPDATE opt_events SET detection = 'keyword' WHERE inferred = 1;
-- `optout revocations` looks for later events of the same subscriber in the same scope.
CREATE INDEX opt_events_by_key ON opt_events (account_sid, scope, subscriber, occurred_at);
