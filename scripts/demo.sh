#!/usr/bin/env bash
# The quick start: optout end to end on this machine. Starts a Kinesis emulator, writes a
# realistic Twilio mix (with a sink test event, duplicates and opt keywords) to a 4-shard
# stream, consumes it into a fresh SQLite file, and prints what a compliance team would ask for.
#
#   scripts/demo.sh                # 5,000 records
#   COUNT=50000 scripts/demo.sh    # more
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT="${COUNT:-5000}"
PORT="${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
WORK="$(mktemp -d)"

echo "== building optout and the emulator"
cargo build --quiet --bin optout --example emulator
# Where cargo put them, as cargo itself says (CARGO_TARGET_DIR, a config's build.target-dir,
# or ./target).
TARGET="$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
OPTOUT="$TARGET/debug/optout"

"$TARGET/debug/examples/emulator" --port "$PORT" 2>"$WORK/emulator.log" &
EMULATOR=$!
trap 'kill $EMULATOR 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo
export OPTOUT_STORE="sqlite://$WORK/optout.db"
STREAM=twilio-event-stream

echo "== optout produce: $COUNT records of Twilio traffic into a 4-shard stream"
"$OPTOUT" produce --stream "$STREAM" --create --shards 4 --count "$COUNT" \
    --test-event --duplicate-ratio 0.1 --seed 7

echo "== optout run: consume every shard, exit once caught up"
"$OPTOUT" run --stream "$STREAM" --exit-when-idle 2

echo "== optout test-events: the test_id for Twilio's Validate step"
"$OPTOUT" test-events

echo "== optout status: who is opted out or back in, per Messaging Service or sender"
"$OPTOUT" status

echo "== optout events --type stop (first 10)"
"$OPTOUT" events --type stop --format csv | head -11

echo "== dead letters: $("$OPTOUT" dead-letters --format json | wc -l)"
