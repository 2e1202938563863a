-- The change feed and the transactional outbox (issue 20), written by the commit in the same
-- transaction as the opt events that cause them.
--
-- changes: one row per change of what optout answers for (account, scope, subscriber): the
-- sender check's status, `send_allowed` or its reason. `id` is the feed's position. Ids come
-- from a sequence, which alone would let several writers make them visible out of order; the
-- writers of changes take turns instead (a transaction-scoped advisory lock from their first
-- change to their commit), so ids become visible in order and a reader never passes one that
-- is still to come.
CREATE TABLE changes (
    id                    BIGSERIAL PRIMARY KEY,
    account_sid           TEXT NOT NULL,
    scope                 TEXT NOT NULL,
    messaging_service_sid TEXT,
    sender                TEXT NOT NULL,
    subscriber            TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('opted_out', 'opted_in')),
    send_allowed          BOOLEAN NOT NULL,
    reason                TEXT NOT NULL,
    event_id              TEXT NOT NULL,               -- the event behind the new answer
    message_sid           TEXT,
    opt_out_type          TEXT NOT NULL,
    detection             TEXT NOT NULL,
    rule                  TEXT,
    occurred_at           TIMESTAMPTZ NOT NULL,        -- that event's data.timestamp
    recorded_at           TIMESTAMPTZ NOT NULL
);

-- outbox: per delivery target, one item per change it takes. `item_key` is stable (derived
-- from the target, the causing event and the change) and unique per target, so a change
-- reaches the outbox once. Items of one `ordering_key` (account, scope, subscriber) are
-- delivered in id order; times are ms since the Unix epoch, on the dispatcher's clock.
CREATE TABLE outbox (
    id                BIGSERIAL PRIMARY KEY,
    target            TEXT NOT NULL,
    item_key          TEXT NOT NULL,
    ordering_key      TEXT NOT NULL,
    change_id         BIGINT NOT NULL REFERENCES changes (id),
    state             TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms   BIGINT NOT NULL DEFAULT 0,
    claimed_by        TEXT,
    claimed_until_ms  BIGINT,
    last_error        TEXT,
    created_ms        BIGINT NOT NULL,
    settled_ms        BIGINT,
    UNIQUE (target, item_key)
);
-- The claim: the oldest pending item per key, and the due ones.
CREATE INDEX outbox_pending_by_key ON outbox (target, ordering_key, id) WHERE state = 'pending';
CREATE INDEX outbox_pending_due ON outbox (target, next_attempt_ms) WHERE state = 'pending';
-- `optout deliveries --target --state` in id order.
CREATE INDEX outbox_by_state ON outbox (state, id);

-- change_heads: the last answer recorded per key, what a commit compares its new answer with.
-- Its row is locked while a commit answers the key again, so concurrent writers of one key
-- take turns. Filled here with today's answers, so that upgrading writes no change for them.
CREATE TABLE change_heads (
    account_sid   TEXT NOT NULL,
    scope         TEXT NOT NULL,
    subscriber    TEXT NOT NULL,
    status        TEXT,
    send_allowed  BOOLEAN,
    reason        TEXT,
    change_id     BIGINT,
    PRIMARY KEY (account_sid, scope, subscriber)
);
INSERT INTO change_heads (account_sid, scope, subscriber, status, send_allowed, reason)
SELECT account_sid, scope, subscriber,
       CASE WHEN reason = 'opted_in' THEN 'opted_in' ELSE 'opted_out' END,
       reason = 'opted_in', reason
FROM (SELECT l.account_sid, l.scope, l.subscriber,
             CASE WHEN l.opt_out_type <> 'STOP' AND s.status = 'opted_out' THEN 'twilio_stop'
                  WHEN l.opt_out_type = 'START' THEN 'opted_in'
                  WHEN l.detection = 'phrase' THEN 'phrase_revocation'
                  WHEN l.detection = 'reassigned' THEN 'reassigned_number'
                  WHEN l.detection = 'keyword' THEN 'keyword_stop'
                  ELSE 'twilio_stop' END AS reason
      FROM (SELECT account_sid, scope, subscriber, opt_out_type, detection,
                   ROW_NUMBER() OVER (PARTITION BY account_sid, scope, subscriber
                                      ORDER BY occurred_at DESC, event_id DESC) AS rn
            FROM opt_events WHERE opt_out_type IN ('STOP', 'START')) l
      LEFT JOIN opt_status s ON s.account_sid = l.account_sid AND s.scope = l.scope
                            AND s.subscriber = l.subscriber
      WHERE l.rn = 1) answers;
