#!/usr/bin/env bash
# Twilio's Messaging webhook under load: signed requests, each a distinct inbound STOP with
# Advanced Opt-Out's OptOutType, from 64 keep-alive clients, into `optout serve
# --twilio-auth-token-file` (commit before answer, group commit), per backend. Prints
# requests/s, p50/p90/p99 latency and the average requests per transaction, then checks that
# every request answered 200 is stored.
#
#   scripts/bench-webhooks.sh                  # both backends
#   BACKENDS=sqlite REQUESTS=60000 CLIENTS=64 scripts/bench-webhooks.sh
#
# The load generator is examples/webhook-load.rs: it builds and signs every request before the
# clock starts, then only writes and reads bytes. It runs on the same machine as the server.
# PostgreSQL: $OPTOUT_BENCH_PG (default postgres://postgres@127.0.0.1:5432/test) must accept
# CREATE DATABASE; scripts/ensure-postgres.sh starts a local one. Release build; delete
# target/release afterwards if the disk is short.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BACKENDS="${BACKENDS:-sqlite postgres}"
REQUESTS="${REQUESTS:-60000}"
WARMUP="${WARMUP:-2000}"
CLIENTS="${CLIENTS:-64}"
PG_ADMIN="${OPTOUT_BENCH_PG:-postgres://postgres@127.0.0.1:5432/test}"
PUBLIC="https://optout.example.com"
TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 300); do curl -sf "http://$1/readyz" >/dev/null && return 0; sleep 0.1; done; return 1; }
metric() { # $1: address, $2: series; its value (0 if absent)
    curl -s "http://$1/metrics" | awk -v s="$2" '$1 == s { print $2; found = 1 } END { if (!found) print 0 }'
}

cargo build --quiet --release --locked --bin optout --example webhook-load
TARGET="${CARGO_TARGET_DIR:-target}"
BIN="$TARGET/release/optout"
LOAD="$TARGET/release/examples/webhook-load"
printf '%s\n' "$TOKEN" >"$WORK/tokens"

bench_one() { # $1: backend
    local backend="$1" store port addr
    case "$backend" in
        sqlite) store="sqlite://$WORK/bench.db" ;;
        postgres)
            local name="optout_bench_webhooks_$$"
            psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
            store="${PG_ADMIN%/*}/$name"
            ;;
    esac
    port="$(free_port)"
    addr="127.0.0.1:$port"
    OPTOUT_STORE="$store" "$BIN" serve --http-addr "$addr" --twilio-auth-token-file "$WORK/tokens" \
        --public-url "$PUBLIC" --log-format json 2>"$WORK/$backend.log" &
    local pid=$!
    PIDS+=("$pid")
    wait_ready "$addr"
    "$LOAD" --addr "$addr" --public-url "$PUBLIC" --token "$TOKEN" --requests "$REQUESTS" \
        --warmup "$WARMUP" --clients "$CLIENTS" >"$WORK/$backend.json"
    local commits requests
    commits="$(metric "$addr" optout_webhook_commits_total)"
    requests="$(metric "$addr" optout_webhook_committed_requests_total)"
    local hwm
    hwm="$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    local stored
    stored="$(OPTOUT_STORE="$store" "$BIN" events --type stop --format csv | tail -n +2 | wc -l)"
    python3 - "$backend" "$WORK/$backend.json" "$commits" "$requests" "$stored" \
        "$((REQUESTS + WARMUP))" "$hwm" <<'PY'
import json, sys
backend, path = sys.argv[1], sys.argv[2]
commits, requests, stored, sent, hwm = (float(x) for x in sys.argv[3:8])
r = json.load(open(path))
print(f"{backend:9} {r['requests_per_sec']:7,.0f} req/s  p50 {r['p50_ms']:5.2f} ms  "
      f"p90 {r['p90_ms']:5.2f} ms  p99 {r['p99_ms']:5.2f} ms  max {r['max_ms']:6.1f} ms  "
      f"non-200 {r['non_200']}  {requests / max(commits, 1):.1f} requests per transaction  "
      f"peak RSS {hwm / 1024:.0f} MiB  stored {int(stored):,} of {int(sent):,}")
if int(stored) != int(sent) or r["non_200"]:
    sys.exit(f"{backend}: {int(sent)} requests answered, {int(stored)} stored")
PY
    if [ "$backend" = postgres ]; then
        psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS optout_bench_webhooks_$$ WITH (FORCE)" || true
    fi
}

echo "Messaging webhook: $REQUESTS signed requests (after $WARMUP to warm up) from $CLIENTS keep-alive clients, commit before answer"
for backend in $BACKENDS; do
    bench_one "$backend"
done
