#!/usr/bin/env bash
# How long `optout run` takes from SIGTERM to exit while draining a backlog (batch in hand,
# checkpoint, lease release): the figure terminationGracePeriodSeconds must exceed.
#
#   scripts/measure-shutdown.sh            # release build, 5 runs per store, 1,000,000 records
#   RUNS=10 COUNT=400000 PROFILE=debug scripts/measure-shutdown.sh
#
# Each run: a fresh store, so that the whole stream is a backlog; optout starts, reads for
# WARMUP seconds, gets SIGTERM, and the time until its process exits is printed. Stores: SQLite
# and, when the local server is up, PostgreSQL (with leases, so the release is included).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RUNS="${RUNS:-5}"
COUNT="${COUNT:-1000000}"
SHARDS="${SHARDS:-4}"
WARMUP="${WARMUP:-2}"
PROFILE="${PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-target}"
PG_ADMIN="${OPTOUT_TEST_PG:-postgres://postgres@127.0.0.1:5432/test}"

# OPTOUT_BIN / EMULATOR_BIN: use these binaries instead of building them (the emulator's own
# speed hardly matters: it only serves the backlog).
if [[ -z "${OPTOUT_BIN:-}" || -z "${EMULATOR_BIN:-}" ]]; then
    if [[ "$PROFILE" == release ]]; then
        cargo build --quiet --release --bin optout --example emulator
    else
        cargo build --quiet --bin optout --example emulator
    fi
fi
OPTOUT="${OPTOUT_BIN:-$TARGET/$PROFILE/optout}"
EMULATOR_BIN="${EMULATOR_BIN:-$TARGET/$PROFILE/examples/emulator}"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
WORK="$(mktemp -d)"
"$EMULATOR_BIN" --port "$PORT" 2>"$WORK/emulator.log" &
EMULATOR=$!
trap 'kill $EMULATOR 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=measure AWS_SECRET_ACCESS_KEY=measure RUST_LOG=warn,optout=info,kinesis_engine=info
STREAM=shutdown-measure
"$OPTOUT" --store "sqlite://$WORK/produce.db" produce --stream "$STREAM" --create --shards "$SHARDS" \
    --count "$COUNT" --seed 11 >/dev/null

stores=(sqlite)
psql "$PG_ADMIN" -qc 'SELECT 1' >/dev/null 2>&1 && stores+=(postgres)

measure() { # store-url log -> seconds from SIGTERM to exit
    "$OPTOUT" --store "$1" run --stream "$STREAM" --lease-ms 10000 2>"$2" &
    local pid=$!
    sleep "$WARMUP"
    kill -0 "$pid" 2>/dev/null || { echo "optout exited before SIGTERM: $(tail -3 "$2")" >&2; exit 1; }
    local start end
    start="$(date +%s.%N)"
    kill -TERM "$pid"
    wait "$pid"
    end="$(date +%s.%N)"
    python3 -c "print(f'{$end - $start:.3f}')"
}

for store in "${stores[@]}"; do
    times=()
    for run in $(seq "$RUNS"); do
        case "$store" in
            sqlite) url="sqlite://$WORK/run-$run.db" ;;
            postgres)
                db="optout_shutdown_$$_$run"
                psql "$PG_ADMIN" -qc "CREATE DATABASE $db" >/dev/null
                url="${PG_ADMIN%/*}/$db"
                ;;
        esac
        t="$(measure "$url" "$WORK/$store-$run.log")"
        grep -q "Consumer stopped cleanly" "$WORK/$store-$run.log" || { echo "run $run did not stop cleanly" >&2; tail -5 "$WORK/$store-$run.log" >&2; exit 1; }
        # The records read before the stop: fewer than COUNT means a backlog was being drained.
        read_records="$(grep -o 'records=[0-9]*' "$WORK/$store-$run.log" | tail -1)"
        echo "$store run $run: ${t} s, $read_records of $COUNT" >&2
        times+=("$t")
        [[ "$store" == postgres ]] && psql "$PG_ADMIN" -qc "DROP DATABASE $db" >/dev/null
    done
    python3 - "$store" "${times[@]}" <<'PYEOF'
import statistics, sys
store, times = sys.argv[1], [float(t) for t in sys.argv[2:]]
print(f"{store}: SIGTERM to exit over {len(times)} runs: median {statistics.median(times):.3f} s, "
      f"max {max(times):.3f} s ({', '.join(f'{t:.3f}' for t in times)})")
PYEOF
done
