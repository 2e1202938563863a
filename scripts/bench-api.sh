#!/usr/bin/env bash
# The sender's lookup under load: GET /v1/status/{subscriber} on a store of 1,000,000 status
# rows, from 64 keep-alive clients, while `optout run` (the same process that serves the API)
# drains a backlog into the same store. Prints p50, p99 and requests/s per backend, and how many
# records the consumer committed during the load. Then, once the backlog is in, 8 NDJSON exports
# of every event at once while /readyz is probed every 50 ms: export time, /readyz latency, and
# the process's peak resident memory (VmHWM, consumer and API together).
#
#   scripts/bench-api.sh                   # both backends
#   BACKENDS=sqlite ROWS=1000000 CLIENTS=64 DURATION=20s BACKLOG=300000 scripts/bench-api.sh
#
# The load generator is wrk (Debian: `apt-get install wrk`) when on the PATH, else oha
# (crates.io), installed on first use into target/bench-tools. Both keep their connections
# alive and ask for a random number of the filled million each time.
# PostgreSQL: $OPTOUT_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test) must accept
# CREATE DATABASE; scripts/ensure-postgres.sh starts a local one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BACKENDS="${BACKENDS:-sqlite postgres}"
ROWS="${ROWS:-1000000}"
CLIENTS="${CLIENTS:-64}"
DURATION="${DURATION:-20s}"
BACKLOG="${BACKLOG:-300000}"
PG_ADMIN="${OPTOUT_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}"
TOKEN="bench-token-$$"
OHA="${OHA:-target/bench-tools/bin/oha}"
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

if ! command -v wrk >/dev/null && [ ! -x "$OHA" ]; then
    echo "installing oha into target/bench-tools (once)..." >&2
    cargo install oha --locked --quiet --root target/bench-tools --no-default-features
fi
cargo build --quiet --release --locked --bin optout --example emulator
BIN=target/release/optout

# The number space of the filled rows: +15550000000 .. +15550999999, one account and scope.
ACCOUNT="AC00000000000000000000000000000001"
SCOPE="MG00000000000000000000000000000001"

fill_sqlite() { # $1: database file
    python3 - "$1" "$ROWS" "$ACCOUNT" "$SCOPE" <<'PY'
import sqlite3, sys
path, rows, account, scope = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
db = sqlite3.connect(path)
db.execute("""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, sender, status,
  changed_at, event_id)
SELECT ?, ?, printf('+1555%07d', i), ?, '+15559870002',
  CASE i % 3 WHEN 0 THEN 'opted_in' ELSE 'opted_out' END,
  '2026-01-01T00:00:00.000000Z', printf('fill-%07d', i) FROM n""", (rows, account, scope, scope))
db.commit()
PY
}

fill_postgres() { # $1: database URL
    psql -q "$1" -v ON_ERROR_STOP=1 <<SQL
INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, sender, status,
  changed_at, event_id)
SELECT '$ACCOUNT', '$SCOPE', '+1555' || lpad(i::text, 7, '0'), '$SCOPE', '+15559870002',
  CASE i % 3 WHEN 0 THEN 'opted_in' ELSE 'opted_out' END,
  '2026-01-01T00:00:00Z', 'fill-' || i FROM generate_series(0, $ROWS - 1) AS i;
ANALYZE opt_status;
SQL
}

load() { # $1: API port; prints the load generator's report
    local url="http://127.0.0.1:$1"
    if command -v wrk >/dev/null; then
        cat >"$WORK/lookup.lua" <<LUA
local n = 0
function setup(thread) n = n + 1; thread:set("id", n) end
function init(args) math.randomseed(id * 7919) end
function request()
  local path = string.format("/v1/status/%%2B15550%06d?scope=$SCOPE&account=$ACCOUNT", math.random(0, 999999))
  return wrk.format("GET", path, { ["Authorization"] = "Bearer $TOKEN" })
end
LUA
        wrk -t 2 -c "$CLIENTS" -d "$DURATION" --latency -s "$WORK/lookup.lua" "$url"
    else
        "$OHA" --no-tui --output-format json -z "$DURATION" -c "$CLIENTS" \
            -H "Authorization: Bearer $TOKEN" --rand-regex-url \
            "http://127\.0\.0\.1:$1/v1/status/%2B15550[0-9]{6}\?scope=$SCOPE&account=$ACCOUNT"
    fi
}

records_total() { # $1: API address; records the consumer has handled so far
    curl -s "http://$1/metrics" | awk '/^optout_records_total/ { s += $2 } END { printf "%d\n", s }'
}

bench_one() { # $1: backend
    local backend="$1" store emu_port api_port
    emu_port="$(free_port)"
    target/release/examples/emulator --port "$emu_port" 2>/dev/null &
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
    echo "[$backend] filling $ROWS status rows..." >&2
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
    local before after
    before="$(records_total "127.0.0.1:$api_port")"
    load "$api_port" >"$WORK/$backend.out"
    after="$(records_total "127.0.0.1:$api_port")"
    python3 - "$backend" "$WORK/$backend.out" "$before" "$after" "$BACKLOG" <<'PY'
import json, re, sys
backend, path, before, after, backlog = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
text = open(path).read()
if text.lstrip().startswith("{"):  # oha
    r = json.loads(text)
    p50, p99 = r["latencyPercentiles"]["p50"] * 1000, r["latencyPercentiles"]["p99"] * 1000
    rps, errors = r["summary"]["requestsPerSec"], sum(
        n for code, n in r.get("statusCodeDistribution", {}).items() if code != "200")
else:  # wrk --latency
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    def pct(p):
        value, u = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)$", text, re.M).groups()
        return float(value) * unit[u]
    p50, p99 = pct(50), pct(99)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = int(bad.group(1)) if bad else 0
print(f"{backend:9} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  {rps:8,.0f} req/s  non-200 {errors}  "
      f"consumer committed {after - before:,} of {backlog:,} records during the load")
PY
    for _ in $(seq 1200); do
        [ "$(records_total "127.0.0.1:$api_port")" -ge "$BACKLOG" ] && break
        sleep 0.5
    done
    python3 - "$backend" "127.0.0.1:$api_port" "$TOKEN" "$run_pid" <<'PY'
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

echo "lookup: $ROWS status rows, $CLIENTS keep-alive clients for $DURATION, backlog $BACKLOG records"
for backend in $BACKENDS; do
    bench_one "$backend"
done
