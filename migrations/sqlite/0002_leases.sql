-- Leases, SQLite dialect (the PostgreSQL schema has had them since 0001): which worker reads
-- which shard. `token` grows at every change of owner and fences checkpoint writes: a worker
-- whose token no longer matches cannot commit. One runner per SQLite file still holds (OS
-- lock); the table lets the same lease code and fencing run on both backends.
CREATE TABLE leases (
    stream_name  TEXT NOT NULL,
    shard_id     TEXT NOT NULL,
    owner        TEXT,
    token        INTEGER NOT NULL DEFAULT 0,
    expires_at   INTEGER NOT NULL DEFAULT 0,  -- milliseconds since the Unix epoch (database clock)
    PRIMARY KEY (stream_name, shard_id)
);
