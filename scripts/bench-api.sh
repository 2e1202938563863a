#!/usr/bin/env bash
# The sender's lookup under load: GET /v1/status/{subscriber} on a store of 1,000,000 numbers
# (an opt event and a status row each) while `optout run` (the same process that serves the API) drains a backlog into the same
# store. Per backend, in one run:
#   1. the drain alone for DRAIN_SAMPLE seconds, after as many to ramp up (records/s with no
#      lookups);
#   2. an open loop: RATE requests/s offered at a fixed rate over CLIENTS connections for
#      DURATION, latencies corrected for coordinated omission (oha -q --latency-correction):
#      p50, p99, requests/s answered, and the drain's records/s beside its unloaded rate;
#   3. a closed loop: SAT_CLIENTS connections (default 32, the server's limit of requests in
#      flight: more wait for a slot, then are answered 503 busy) asking back to back, the same figures.
# A closed loop with a fixed number of clients cannot hold a latency target at a given rate
# (Little's law ties the two), hence the open loop for the target and the closed one for the
# ceiling. Then, once the backlog is in, 8 NDJSON exports of every event at once while /readyz
# is probed every 50 ms: export time, /readyz latency, and the process's peak resident memory
# (VmHWM, consumer and API together).
#
#   scripts/bench-api.sh                   # both backends
#   BACKENDS=sqlite ROWS=1000000 CLIENTS=64 RATE=5000 DURATION=20s BACKLOG=1000000 scripts/bench-api.sh
#
# The load generator is oha (crates.io), installed on first use into $TARGET/bench-tools. It
# keeps its connections alive and asks for a random number of the filled million each time.
# A drain figure marked "ran out" means the backlog was all in before the phase ended, so the
# rate is a lower bound.
# OPTOUT_BIN=path measures another build of optout (default: this checkout's release build).
# EXPORTS=0 skips the exports. PROFILE_DIR=dir records each loaded phase of the process with
# `perf record -g` into dir/BACKEND.PHASE.perf.data (Debian's linux-perf).
# PostgreSQL: $OPTOUT_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test) must accept
# CREATE DATABASE; scripts/ensure-postgres.sh starts a local one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BACKENDS="${BACKENDS:-sqlite postgres}"
ROWS="${ROWS:-1000000}"
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-20s}"
RATE="${RATE:-5000}"
SAT_CLIENTS="${SAT_CLIENTS:-32}"
DRAIN_SAMPLE="${DRAIN_SAMPLE:-3}"
BACKLOG="${BACKLOG:-1000000}"
EXPORTS="${EXPORTS:-1}"
PROFILE_DIR="${PROFILE_DIR:-}"
PG_ADMIN="${OPTOUT_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}"
TOKEN="bench-token-$$"
TARGET="${CARGO_TARGET_DIR:-target}"
OHA="${OHA:-$TARGET/bench-tools/bin/oha}"
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

if [ ! -x "$OHA" ]; then
    echo "installing oha into $TARGET/bench-tools (once)..." >&2
    cargo install oha --version 1.16.0 --locked --quiet --root "$TARGET/bench-tools"
fi
cargo build --quiet --release --locked --bin optout --example emulator
BIN="${OPTOUT_BIN:-$TARGET/release/optout}"

# The number space of the filled rows: +15550000000 .. +15550999999, one account and scope.
ACCOUNT="AC00000000000000000000000000000001"
SCOPE="MG00000000000000000000000000000001"

# Each filled number has one opt event (a START for every third, else a STOP) and the status
# row it sets, as a store that has recorded them: the lookup reads the events, so status rows
# alone would only measure a miss.
fill_sqlite() { # $1: database file
    python3 - "$1" "$ROWS" "$ACCOUNT" "$SCOPE" <<'PY'
import sqlite3, sys
path, rows, account, scope = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
db = sqlite3.connect(path)
db.execute("""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
INSERT INTO opt_events (event_id, identity, opt_out_type, inferred, account_sid,
  messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at,
  schema_version, stream_name, shard_id, sequence_number, recorded_at, detection, rule,
  time_source, paths, sets_status)
SELECT printf('FILL%09d', i), printf('FILL%09d', i),
  CASE i % 3 WHEN 0 THEN 'START' ELSE 'STOP' END, 0, ?, ?, '+15559870002',
  printf('+1555%07d', i), ?, CASE i % 3 WHEN 0 THEN 'START' ELSE 'STOP' END,
  printf('SM%032x', i), '2026-01-01T00:00:00.000000Z', 5, 'fill', 'shardId-000000000000',
  printf('%020d', i), '2026-01-01T00:00:00.000000Z', 'twilio', NULL, 'twilio', 'kinesis', 1
FROM n""", (rows, account, scope, scope))
db.execute("""INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid,
  sender, status, changed_at, event_id)
SELECT account_sid, scope, subscriber, messaging_service_sid, sender,
  CASE opt_out_type WHEN 'STOP' THEN 'opted_out' ELSE 'opted_in' END, occurred_at, event_id
FROM opt_events WHERE stream_name = 'fill'""")
db.commit()
db.execute("ANALYZE")
db.commit()
PY
}

fill_postgres() { # $1: database URL
    psql -q "$1" -v ON_ERROR_STOP=1 <<SQL
INSERT INTO opt_events (event_id, identity, opt_out_type, inferred, account_sid,
  messaging_service_sid, sender, subscriber, scope, body, message_sid, occurred_at,
  schema_version, stream_name, shard_id, sequence_number, recorded_at, detection, rule,
  time_source, paths, sets_status)
SELECT 'FILL' || lpad(i::text, 9, '0'), 'FILL' || lpad(i::text, 9, '0'),
  CASE i % 3 WHEN 0 THEN 'START' ELSE 'STOP' END, false, '$ACCOUNT', '$SCOPE', '+15559870002',
  '+1555' || lpad(i::text, 7, '0'), '$SCOPE', CASE i % 3 WHEN 0 THEN 'START' ELSE 'STOP' END,
  'SM' || lpad(to_hex(i), 32, '0'), '2026-01-01T00:00:00Z', 5, 'fill', 'shardId-000000000000',
  lpad(i::text, 20, '0'), '2026-01-01T00:00:00Z', 'twilio', NULL, 'twilio', 'kinesis', true
FROM generate_series(0, $ROWS - 1) AS i;
INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, sender, status,
  changed_at, event_id)
SELECT account_sid, scope, subscriber, messaging_service_sid, sender,
  CASE opt_out_type WHEN 'STOP' THEN 'opted_out' ELSE 'opted_in' END, occurred_at, event_id
FROM opt_events WHERE stream_name = 'fill';
ANALYZE;
SQL
}

load() { # $1: API port, $2: requests/s to offer (0: a closed loop); oha's JSON
    local rate=(-c "$SAT_CLIENTS")
    [ "$2" -gt 0 ] && rate=(-c "$CLIENTS" -q "$2" --latency-correction)
    "$OHA" --no-tui --output-format json -z "$DURATION" "${rate[@]}" \
        -H "Authorization: Bearer $TOKEN" --rand-regex-url \
        "http://127[.]0[.]0[.]1:$1/v1/status/%2B15550[0-9]{6}[?]scope=$SCOPE&account=$ACCOUNT"
}

records_total() { # $1: API address; records the consumer has handled so far
    curl -s "http://$1/metrics" | awk '/^optout_records_total/ { s += $2 } END { printf "%d\n", s }'
}

bench_one() { # $1: backend
    local backend="$1" store emu_port api_port
    emu_port="$(free_port)"
    "$TARGET/release/examples/emulator" --port "$emu_port" 2>/dev/null &
    local emu_pid=$!
    PIDS+=("$emu_pid")
    wait_port "$emu_port"
    export AWS_ENDPOINT_URL="http://127.0.0.1:$emu_port" AWS_REGION=us-east-1
    export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
    # The emulator enforces no read limit (AWS: 2 MiB/s per shard): drain at full speed.
    export OPTOUT_SHARD_READ_MIB=0
    case "$backend" in
        sqlite) store="sqlite://$WORK/bench.db" ;;
        postgres)
            local name="optout_bench_api_$$"
            psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
            store="${PG_ADMIN%/*}/$name"
            ;;
    esac
    OPTOUT_STORE="$store" "$BIN" migrate >/dev/null
    echo "[$backend] filling $ROWS numbers (an opt event and a status row each)..." >&2
    case "$backend" in
        sqlite) fill_sqlite "$WORK/bench.db" ;;
        postgres) fill_postgres "$store" ;;
    esac
    echo "[$backend] producing a backlog of $BACKLOG records..." >&2
    OPTOUT_STORE="$store" "$BIN" produce --stream bench --create --shards 4 --count "$BACKLOG" \
        --seed 7 --opt-ratio 0.9 >/dev/null
    api_port="$(free_port)"
    OPTOUT_STORE="$store" OPTOUT_HTTP_TOKEN="$TOKEN" "$BIN" run --stream bench \
        --http-addr "127.0.0.1:$api_port" --log-format json 2>"$WORK/$backend.log" &
    local run_pid=$!
    PIDS+=("$run_pid")
    wait_port "$api_port"
    # The drain alone, then under each load: records/s from the consumer's own counter.
    local t0 n0 t1 n1 unloaded
    for _ in $(seq 600); do
        [ "$(records_total "127.0.0.1:$api_port")" -gt 0 ] && break
        sleep 0.1
    done
    # Past the ramp-up first: readers start with small calls while the in-flight budget grows.
    sleep "$DRAIN_SAMPLE"
    t0="$(date +%s.%N)"; n0="$(records_total "127.0.0.1:$api_port")"
    sleep "$DRAIN_SAMPLE"
    t1="$(date +%s.%N)"; n1="$(records_total "127.0.0.1:$api_port")"
    unloaded="$(python3 -c "print(($n1 - $n0) / ($t1 - $t0))")"
    printf '%-9s drain alone: %s records/s%s\n' "$backend" "$(printf '%.0f' "$unloaded")" \
        "$([ "$n1" -ge "$BACKLOG" ] && echo ' (ran out)')"
    for phase in "open $RATE" "closed 0"; do
        local mode rate
        read -r mode rate <<<"$phase"
        local perf_pid=""
        if [ -n "$PROFILE_DIR" ]; then
            mkdir -p "$PROFILE_DIR"
            perf record -F 999 -g -p "$run_pid" -o "$PROFILE_DIR/$backend.$mode.perf.data" \
                >/dev/null 2>&1 &
            perf_pid=$!
        fi
        t0="$(date +%s.%N)"; n0="$(records_total "127.0.0.1:$api_port")"
        load "$api_port" "$rate" >"$WORK/$backend.$mode.json"
        # perf writes its file on SIGINT: the profile covers the phase, whatever DURATION's unit.
        [ -z "$perf_pid" ] || { kill -INT "$perf_pid"; wait "$perf_pid" || true; }
        t1="$(date +%s.%N)"; n1="$(records_total "127.0.0.1:$api_port")"
        python3 - "$backend" "$mode" "$rate" "$WORK/$backend.$mode.json" "$n0" "$n1" "$t0" "$t1" \
            "$unloaded" "$BACKLOG" <<'PY'
import json, sys
backend, mode, rate, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
n0, n1, t0, t1, unloaded, backlog = (float(a) for a in sys.argv[5:11])
r = json.load(open(path))
p50, p99 = r["latencyPercentiles"]["p50"] * 1000, r["latencyPercentiles"]["p99"] * 1000
codes = r.get("statusCodeDistribution", {})
# oha's rate counts every response; a 503 busy is not an answer.
rps = r["summary"]["requestsPerSec"] * codes.get("200", 0) / max(sum(codes.values()), 1)
bad = {code: n for code, n in codes.items() if code != "200"}
# Requests still in flight when the duration ends are cut, not failed.
bad.update((e, n) for e, n in r.get("errorDistribution", {}).items() if "deadline" not in e)
errors = sum(bad.values())
drain = (n1 - n0) / (t1 - t0)
offered = f"offered {rate:,}/s" if rate else "closed loop"
ran_out = " (ran out)" if n1 >= backlog else ""
ratio = f"{drain / unloaded:.2f}x" if unloaded > 0 else "n/a"
print(f"{backend:9} {offered:15} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  {rps:8,.0f} answered/s  "
      f"non-200 {errors}{' ' + str(bad) if bad else ''}  drain {drain:,.0f} records/s = {ratio} alone{ran_out}")
PY
    done
    for _ in $(seq 1200); do
        [ "$EXPORTS" = 0 ] || [ "$(records_total "127.0.0.1:$api_port")" -ge "$BACKLOG" ] && break
        sleep 0.5
    done
    [ "$EXPORTS" = 0 ] || python3 - "$backend" "127.0.0.1:$api_port" "$TOKEN" "$run_pid" <<'PY'
import http.client, statistics, sys, threading, time
backend, addr, token, pid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
host, port = addr.split(":")
lines, done = [], threading.Event()
def export():
    c = http.client.HTTPConnection(host, int(port), timeout=600)
    c.request("GET", "/v1/events", headers={"Authorization": f"Bearer {token}",
                                            "Accept": "application/x-ndjson"})
    r, n = c.getresponse(), 0
    while chunk := r.read(1 << 16):
        n += chunk.count(b"\n")
    lines.append(n)
start = time.perf_counter()
threads = [threading.Thread(target=export) for _ in range(8)]
for t in threads:
    t.start()
probes = []
while any(t.is_alive() for t in threads):
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    t0 = time.perf_counter()
    c.request("GET", "/readyz")
    status = c.getresponse().status
    probes.append((time.perf_counter() - t0) * 1000)
    assert status == 200, status
    time.sleep(0.05)
elapsed = time.perf_counter() - start
hwm = next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("VmHWM"))
print(f"{backend:9} 8 NDJSON exports of {lines[0]:,} events each in {elapsed:.1f} s; "
      f"/readyz during them: {len(probes)} probes, p50 {statistics.median(probes):.1f} ms, "
      f"max {max(probes):.1f} ms; peak RSS {int(hwm) / 1024:.0f} MiB")
PY
    kill "$run_pid" 2>/dev/null || true
    wait "$run_pid" 2>/dev/null || true
    kill "$emu_pid" 2>/dev/null || true
    if [ "$backend" = postgres ]; then
        psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS optout_bench_api_$$ WITH (FORCE)" || true
    fi
}

echo "lookup: $ROWS numbers; $RATE requests/s offered over $CLIENTS connections, then a closed loop of $SAT_CLIENTS, $DURATION each; backlog $BACKLOG records"
for backend in $BACKENDS; do
    bench_one "$backend"
done
