#!/usr/bin/env bash
# End-to-end throughput: a release build of optout consumes N records of the Twilio mix from
# the in-process emulator into a fresh SQLite file (or $STORE). Prints records/s and peak RSS.
#
#   COUNT=200000 SHARDS=4 scripts/bench-e2e.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT="${COUNT:-200000}"
SHARDS="${SHARDS:-4}"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
WORK="$(mktemp -d)"

cargo build --quiet --release --bin optout --example emulator
target/release/examples/emulator --port "$PORT" 2>/dev/null &
EMULATOR=$!
trap 'kill $EMULATOR 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export OPTOUT_STORE="${STORE:-sqlite://$WORK/optout.db}"

target/release/optout produce --stream bench --create --shards "$SHARDS" --count "$COUNT" --seed 3 >/dev/null
start=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$WORK/rss" target/release/optout run --stream bench --exit-when-idle 1 \
    --log-format json 2>"$WORK/log"
end=$(date +%s.%N)
read_records=$(grep -o '"records":[0-9]*' "$WORK/log" | tail -1 | cut -d: -f2)
python3 - "$read_records" "$start" "$end" "$(cat "$WORK/rss")" <<'PY'
import sys
n, start, end, rss = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
busy = end - start - 1.0  # minus the --exit-when-idle wait
print(f"records read: {n}")
print(f"wall time: {end - start:.2f} s ({busy:.2f} s excluding the 1 s idle wait)")
print(f"throughput: {n / busy:,.0f} records/s")
print(f"peak RSS: {rss / 1024:.1f} MiB")
PY
