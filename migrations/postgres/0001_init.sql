-- optout schema, PostgreSQL dialect. Timestamps are TEXT in one fixed format
-- (UTC, microseconds, 'Z': 2026-03-01T12:00:04.512000Z), so text order is time order.

-- Every opt event ever seen, once (the CloudEvent id is the identity).
CREATE TABLE opt_events (
    event_id              TEXT PRIMARY KEY,
    opt_out_type          TEXT NOT NULL CHECK (opt_out_type IN ('STOP', 'START', 'HELP')),
    inferred              BIGINT NOT NULL DEFAULT 0,  -- 1: derived from the body (--infer-keywords)
    account_sid           TEXT NOT NULL,
    messaging_service_sid TEXT,
    sender                TEXT NOT NULL,               -- data.to
    subscriber            TEXT NOT NULL,               -- data.from, verbatim
    scope                 TEXT NOT NULL,               -- messaging_service_sid, else sender
    body                  TEXT,
    message_sid           TEXT,
    occurred_at           TEXT NOT NULL,               -- data.timestamp
    schema_version        BIGINT,
    stream_name           TEXT NOT NULL,
    shard_id              TEXT NOT NULL,
    sequence_number       TEXT NOT NULL,
    recorded_at           TEXT NOT NULL
);
CREATE INDEX opt_events_by_subscriber ON opt_events (subscriber, occurred_at);
CREATE INDEX opt_events_by_time ON opt_events (occurred_at);

-- Current status per (account, scope, subscriber): the latest STOP/START by data.timestamp.
CREATE TABLE opt_status (
    account_sid           TEXT NOT NULL,
    scope                 TEXT NOT NULL,
    subscriber            TEXT NOT NULL,
    messaging_service_sid TEXT,
    sender                TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('opted_out', 'opted_in')),
    changed_at            TEXT NOT NULL,
    event_id              TEXT NOT NULL,
    PRIMARY KEY (account_sid, scope, subscriber)
);
CREATE INDEX opt_status_by_subscriber ON opt_status (subscriber);

-- Where each shard's reading stands; written in the same transaction as the batch's effects.
CREATE TABLE checkpoints (
    stream_name     TEXT NOT NULL,
    shard_id        TEXT NOT NULL,
    sequence_number TEXT,
    finished        BIGINT NOT NULL DEFAULT 0,  -- 1: closed shard read to its end
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (stream_name, shard_id)
);

-- Records that could not be shown irrelevant, kept whole.
CREATE TABLE dead_letters (
    stream_name     TEXT NOT NULL,
    shard_id        TEXT NOT NULL,
    sequence_number TEXT NOT NULL,
    partition_key   TEXT,
    reason          TEXT NOT NULL,
    data            BYTEA NOT NULL,
    recorded_at     TEXT NOT NULL,
    PRIMARY KEY (stream_name, shard_id, sequence_number)
);

-- The sink's test events: give test_id to Twilio's Validate call.
CREATE TABLE sink_test_events (
    test_id         TEXT PRIMARY KEY,
    account_sid     TEXT NOT NULL,
    occurred_at     TEXT,
    stream_name     TEXT NOT NULL,
    shard_id        TEXT NOT NULL,
    sequence_number TEXT NOT NULL,
    recorded_at     TEXT NOT NULL
);

-- Leases: which worker reads which shard. `token` grows at every change of owner and fences
-- checkpoint writes: a worker whose token no longer matches cannot commit.
CREATE TABLE leases (
    stream_name  TEXT NOT NULL,
    shard_id     TEXT NOT NULL,
    owner        TEXT,
    token        BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT NOT NULL DEFAULT 0,  -- milliseconds since the Unix epoch (database clock)
    PRIMARY KEY (stream_name, shard_id)
);
