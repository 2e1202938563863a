#!/usr/bin/env bash
# Status pages under --revocation-scope (docs/semantics.md, rule 14) on a SQLite store of
# 1,000,000 status rows: each row's own START or STOP, and for a fifth of the numbers a later
# honoured STOP in another scope of the same account (what `account` and `all` look up per row).
# Prints, per mode, the time of `optout status --limit 1000` (the whole process), and of 20
# successive /v1/status pages of 1,000 rows from `optout serve` following next_cursor, started
# deep in the table; and the query plan of the per-row look (it must use opt_events_reaching).
#
#   scripts/measure-revocation-scope.sh            # ROWS=1000000, release build
#   ROWS=200000 PROFILE=debug scripts/measure-revocation-scope.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ROWS="${ROWS:-1000000}"
PROFILE="${PROFILE:-release}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$PROFILE" = release ]; then cargo build --release --quiet; else cargo build --quiet; fi
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET/$PROFILE/optout"
DB="$WORK/optout.db"
"$BIN" --store "sqlite://$DB" migrate >/dev/null

echo "filling $ROWS status rows ..."
sqlite3 "$DB" <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $ROWS)
INSERT INTO opt_events (event_id, identity, opt_out_type, account_sid, messaging_service_sid,
    sender, subscriber, scope, occurred_at, stream_name, shard_id, sequence_number,
    recorded_at, sets_status)
SELECT 'EV' || i, 'EV' || i, CASE WHEN i % 3 = 0 THEN 'STOP' ELSE 'START' END,
       'AC' || (i % 2), 'MG' || (i % 10), '+15559870002', '+1555' || printf('%07d', i / 2),
       'MG' || (i % 10), '2026-03-01T12:00:00.000000Z', 'bench', 'shard-0', i,
       '2026-03-01T12:00:00.000000Z', 1
FROM n;
INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, sender, status,
    changed_at, event_id)
SELECT account_sid, scope, subscriber, messaging_service_sid, sender,
       CASE opt_out_type WHEN 'STOP' THEN 'opted_out' ELSE 'opted_in' END, occurred_at, event_id
FROM opt_events;
-- A later honoured STOP in another scope of the same account, for a fifth of the numbers.
INSERT INTO opt_events (event_id, identity, opt_out_type, account_sid, messaging_service_sid,
    sender, subscriber, scope, occurred_at, stream_name, shard_id, sequence_number,
    recorded_at, sets_status)
SELECT 'EX' || rowid, 'EX' || rowid, 'STOP', account_sid, 'MGX', sender, subscriber, 'MGX',
       '2026-03-02T12:00:00.000000Z', 'bench', 'shard-1', rowid, occurred_at, 1
FROM opt_events WHERE stream_name = 'bench' AND shard_id = 'shard-0' AND rowid % 5 = 1;
ANALYZE;
SQL

echo "query plan of the per-row look (account mode):"
sqlite3 "$DB" "EXPLAIN QUERY PLAN SELECT g.event_id FROM opt_events g WHERE g.subscriber = '+15550000001' AND g.account_sid = 'AC1' AND g.opt_out_type = 'STOP' AND g.sets_status AND NOT (g.account_sid = 'AC1' AND g.scope = 'MG1') AND (g.occurred_at > '2026-03-01T12:00:00.000000Z' OR (g.occurred_at = '2026-03-01T12:00:00.000000Z' AND g.event_id > 'EV1')) ORDER BY g.occurred_at DESC, g.event_id DESC LIMIT 1" | sed 's/^/  /'

ms() { python3 -c 'import time; print(int(time.time() * 1000))'; }
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
for mode in scope account all; do
    t0=$(ms)
    "$BIN" --store "sqlite://$DB" status --revocation-scope "$mode" --limit 1000 --format json >"$WORK/out.json"
    t1=$(ms)
    reached=$(grep -c '"origin_scope":"' "$WORK/out.json" || true)
    "$BIN" --store "sqlite://$DB" serve --http-addr "127.0.0.1:$PORT" --revocation-scope "$mode" 2>/dev/null &
    PIDS+=($!)
    for _ in $(seq 300); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
    # Start deep: the first page after a number half-way through the table.
    cursor=$(python3 -c 'import base64, json, sys; print(base64.urlsafe_b64encode(json.dumps(["AC1", "MG5", "+1555" + "%07d" % (int(sys.argv[1]) // 4)]).encode()).decode().rstrip("="))' "$ROWS")
    t2=$(ms)
    for _ in $(seq 20); do
        cursor=$(curl -sf "http://127.0.0.1:$PORT/v1/status?limit=1000&cursor=$cursor" \
            | python3 -c 'import json, sys; print(json.load(sys.stdin)["next_cursor"] or "")')
        [ -n "$cursor" ] || break
    done
    t3=$(ms)
    kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
    echo "$mode: optout status --limit 1000: $((t1 - t0)) ms ($reached rows reached from another scope); 20 API pages of 1,000: $(( (t3 - t2) / 20 )) ms a page"
done
