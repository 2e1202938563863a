#!/usr/bin/env bash
# The web console's page times on a large store: 1,000,000 status rows and 10,000,000 opt
# events over a year (one in 50 a phrase revocation, 2,000 scopes), filled straight into the
# tables after `optout migrate` (the rollup's triggers count every row as a commit would), then
# `optout serve` and each page fetched REPEAT times with curl: prints the median and the
# slowest time to the last byte per page and backend.
#
#   scripts/bench-console.sh                      # both backends
#   BACKENDS=sqlite EVENTS=10000000 STATUS=1000000 REPEAT=20 scripts/bench-console.sh
#
# PostgreSQL: $OPTOUT_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test) must accept
# CREATE DATABASE; scripts/ensure-postgres.sh starts a local one. Filling takes minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BACKENDS="${BACKENDS:-sqlite postgres}"
EVENTS="${EVENTS:-10000000}"
STATUS="${STATUS:-1000000}"
REPEAT="${REPEAT:-20}"
PG_ADMIN="${OPTOUT_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}"
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="${BIN:-$TARGET/release/optout}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

if [ "$BIN" = "$TARGET/release/optout" ]; then
    cargo build --quiet --release --locked --bin optout
fi

# Event i: subscriber +1555 (i mod STATUS), scope MG(i mod 2000), one per ~3 s over a year from
# 2025-03-01; type STOP/START/HELP by i mod 3, every 50th a phrase revocation STOP.
fill_sqlite() { # $1: database file
    python3 - "$1" "$EVENTS" "$STATUS" <<'PY'
import sqlite3, sys
path, events, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=OFF")
step = 31536000 // max(events, 1) or 1
chunk = 500000
for start in range(0, events, chunk):
    end = min(events, start + chunk)
    db.execute("""WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
    INSERT INTO opt_events (event_id, identity, opt_out_type, inferred, account_sid,
      messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at,
      schema_version, stream_name, shard_id, sequence_number, recorded_at, detection, rule,
      time_source, paths, sets_status)
    SELECT printf('EV%09d', i), printf('EV%09d', i),
      CASE WHEN i % 50 = 0 THEN 'STOP' ELSE CASE i % 3 WHEN 0 THEN 'STOP' WHEN 1 THEN 'START' ELSE 'HELP' END END,
      CASE WHEN i % 50 = 0 THEN 1 ELSE 0 END,
      'AC00000000000000000000000000000001', printf('MG%032d', i % 2000), '+15559870002',
      printf('+1555%07d', i % ?), printf('MG%032d', i % 2000),
      CASE WHEN i % 50 = 0 THEN 'please stop texting me' ELSE 'STOP' END,
      printf('SM%032x', i),
      strftime('%Y-%m-%dT%H:%M:%S.000000Z', 1740787200 + i * ?, 'unixepoch'),
      5, 'bench', 'shardId-000000000000', printf('%020d', i),
      '2026-03-01T00:00:00.000000Z',
      CASE WHEN i % 50 = 0 THEN 'phrase' ELSE 'twilio' END,
      CASE WHEN i % 50 = 0 THEN 'builtin-2026.1:stop-texting' END, 'twilio', 'kinesis', 1
    FROM n""", (start, end, status, step))
    db.commit()
    print(f"  {end} events", file=sys.stderr, flush=True)
db.execute("""INSERT OR REPLACE INTO opt_status (account_sid, scope, subscriber,
  messaging_service_sid, sender, status, changed_at, event_id)
  SELECT account_sid, scope, subscriber, messaging_service_sid, sender,
    CASE opt_out_type WHEN 'STOP' THEN 'opted_out' ELSE 'opted_in' END, occurred_at, event_id
  FROM opt_events WHERE opt_out_type IN ('STOP', 'START') AND event_id >= ?""",
  (f"EV{max(events - status, 0):09d}",))
db.commit()
db.execute("ANALYZE")
db.commit()
PY
}

fill_postgres() { # $1: database URL
    local step=$((31536000 / EVENTS)); [ "$step" -ge 1 ] || step=1
    psql -q "$1" -v ON_ERROR_STOP=1 <<SQL
INSERT INTO opt_events (event_id, identity, opt_out_type, inferred, account_sid,
  messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at,
  schema_version, stream_name, shard_id, sequence_number, recorded_at, detection, rule,
  time_source, paths, sets_status)
SELECT 'EV' || lpad(i::text, 9, '0'), 'EV' || lpad(i::text, 9, '0'),
  CASE WHEN i % 50 = 0 THEN 'STOP' ELSE (ARRAY['STOP','START','HELP'])[i % 3 + 1] END,
  i % 50 = 0, 'AC00000000000000000000000000000001', 'MG' || lpad((i % 2000)::text, 32, '0'),
  '+15559870002', '+1555' || lpad((i % $STATUS)::text, 7, '0'),
  'MG' || lpad((i % 2000)::text, 32, '0'),
  CASE WHEN i % 50 = 0 THEN 'please stop texting me' ELSE 'STOP' END,
  'SM' || lpad(to_hex(i), 32, '0'),
  to_timestamp(1740787200 + i::bigint * $step), 5, 'bench', 'shardId-000000000000',
  lpad(i::text, 20, '0'), '2026-03-01T00:00:00Z',
  CASE WHEN i % 50 = 0 THEN 'phrase' ELSE 'twilio' END,
  CASE WHEN i % 50 = 0 THEN 'builtin-2026.1:stop-texting' END, 'twilio', 'kinesis', true
FROM generate_series(0, $EVENTS - 1) AS i;
INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, sender, status,
  changed_at, event_id)
SELECT DISTINCT ON (account_sid, scope, subscriber) account_sid, scope, subscriber,
  messaging_service_sid, sender, CASE opt_out_type WHEN 'STOP' THEN 'opted_out' ELSE 'opted_in' END,
  occurred_at, event_id
FROM opt_events WHERE opt_out_type IN ('STOP', 'START') AND event_id >= 'EV' || lpad(greatest($EVENTS - $STATUS, 0)::text, 9, '0')
ORDER BY account_sid, scope, subscriber, occurred_at DESC;
ANALYZE;
SQL
}

measure() { # $1: port, $2: name, $3: path; prints "name median max" in ms
    local times=()
    for _ in $(seq "$REPEAT"); do
        times+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$1$3")")
    done
    printf '%s\n' "${times[@]}" | sort -n | awk -v name="$2" '
        { t[NR] = $1 * 1000 } END { printf "  %-28s median %7.1f ms   max %7.1f ms\n", name, t[int((NR + 1) / 2)], t[NR] }'
}

for backend in $BACKENDS; do
    case "$backend" in
        sqlite) store="sqlite://$WORK/bench.db" ;;
        postgres)
            name="optout_bench_console_$$"
            psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
            store="${PG_ADMIN%/*}/$name"
            ;;
    esac
    OPTOUT_STORE="$store" "$BIN" migrate >/dev/null
    echo "[$backend] filling $EVENTS events and $STATUS status rows..." >&2
    started=$(date +%s)
    case "$backend" in
        sqlite) fill_sqlite "$WORK/bench.db" ;;
        postgres) fill_postgres "$store" ;;
    esac
    echo "[$backend] filled in $(( $(date +%s) - started )) s" >&2
    port="$(free_port)"
    OPTOUT_STORE="$store" "$BIN" serve --http-addr "127.0.0.1:$port" 2>"$WORK/$backend.log" &
    PIDS+=("$!")
    wait_port "$port"
    number="%2B1555$(printf '%07d' $((STATUS / 2 + 7)))"
    echo "[$backend] $EVENTS events, $STATUS status rows; $REPEAT requests per page:"
    measure "$port" "lookup (form)" "/console/"
    measure "$port" "subscriber (deep link)" "/console/subscribers/$number"
    measure "$port" "revocations" "/console/revocations"
    measure "$port" "activity (30 days)" "/console/activity?from=2026-01-01&to=2026-01-30"
    measure "$port" "activity (400 days)" "/console/activity?from=2025-02-01&to=2026-03-07"
    measure "$port" "activity + scopes (30 d)" "/console/activity?from=2026-01-01&to=2026-01-30&by_scope=1"
    measure "$port" "activity (1 scope, 90 d)" "/console/activity?from=2025-12-01&to=2026-02-28&scope=MG00000000000000000000000000000007"
    measure "$port" "dead letters" "/console/dead-letters"
    measure "$port" "health" "/console/health"
    kill "${PIDS[-1]}" 2>/dev/null || true
    wait "${PIDS[-1]}" 2>/dev/null || true
    if [ "$backend" = postgres ]; then
        psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $name" || true
    fi
done
