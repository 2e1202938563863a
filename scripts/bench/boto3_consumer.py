#!/usr/bin/env python3
"""A minimal boto3 consumer, the yardstick of scripts/bench-e2e.sh: drains every shard of a
stream from TRIM_HORIZON with a GetRecords loop (one thread per shard, Limit 10,000, at most
5 calls per second per shard), keeps the opt-keyword messages in sqlite3 with a checkpoint per
shard in the same transaction, and stops once every shard is caught up. It prints the number of
records read. No KCL, no leases: the least a Python consumer does.

    python3 scripts/bench/boto3_consumer.py STREAM DB
"""
import json
import sqlite3
import sys
import threading
import time

import boto3

OPT = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "START", "YES", "UNSTOP", "HELP", "INFO"}
INBOUND = "com.twilio.messaging.inbound-message.received"


def main():
    stream, path = sys.argv[1], sys.argv[2]
    kinesis = boto3.client("kinesis")
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE IF NOT EXISTS opt_events (id TEXT PRIMARY KEY, sender TEXT, keyword TEXT)")
    db.execute("CREATE TABLE IF NOT EXISTS checkpoints (shard_id TEXT PRIMARY KEY, seq TEXT)")
    lock = threading.Lock()
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    total = [0]

    def read(shard_id):
        client = boto3.client("kinesis")  # clients are not shared across threads
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard_id,
                                       ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            started = time.monotonic()
            out = client.get_records(ShardIterator=it, Limit=10000)
            records = out["Records"]
            rows = []
            for r in records:
                try:
                    ev = json.loads(r["Data"])
                except ValueError:
                    continue
                if ev.get("type") != INBOUND:
                    continue
                data = ev.get("data")
                if isinstance(data, str):
                    data = json.loads(data)
                body = (data or {}).get("body", "").strip().upper()
                if body in OPT:
                    rows.append((ev["id"], data.get("from"), body))
            if records:
                with lock:
                    db.execute("BEGIN")
                    db.executemany("INSERT OR IGNORE INTO opt_events VALUES (?, ?, ?)", rows)
                    db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?)",
                               (shard_id, records[-1]["SequenceNumber"]))
                    db.execute("COMMIT")
                    total[0] += len(records)
            if not records and out.get("MillisBehindLatest", 0) == 0:
                return
            it = out.get("NextShardIterator")
            time.sleep(max(0.0, 0.2 - (time.monotonic() - started)))

    threads = [threading.Thread(target=read, args=(s,)) for s in shards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(total[0])


if __name__ == "__main__":
    main()
