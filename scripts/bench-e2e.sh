#!/usr/bin/env bash
# End-to-end benchmarks with a release build, printed as Markdown tables (docs/performance.md's).
#
# drain:  a backlog of PER_SHARD records of the Twilio mix per shard is written to the in-process
#         emulator before `optout run --exit-when-idle 1` starts; it is drained into a fresh
#         SQLite file (or $STORE). For each shard count in SHARDS (default budget), then for each
#         budget in BUDGETS at BUDGET_SHARDS shards. The same backlog is drained by a minimal
#         boto3 consumer (scripts/bench/boto3_consumer.py) and, if BASELINE_BIN names another
#         optout binary (e.g. a build of an older commit), by that too: ratios within one run.
# replay: REPLAY_COUNT records of the Twilio mix as one JSON per line, replayed by
#         `optout replay` (plain, gzip, and split into 4 files in parallel) against a Python
#         json.loads loop over the same file (and BASELINE_BIN's replay, if set).
#
#   scripts/bench-e2e.sh                       # both, default sizes
#   PER_SHARD=10000 SHARDS="4 16 64 256" BUDGETS="16 64 256" scripts/bench-e2e.sh drain
#   REPLAY_COUNT=200000 scripts/bench-e2e.sh replay
#   BOTO3=0 skips the boto3 runs; BOTO3_SHARDS="4" limits them to some shard counts.
#   REPLAY_PG=1 also replays into a fresh PostgreSQL database on 127.0.0.1:5432
#   (scripts/ensure-postgres.sh).
#
# Columns: records/s over the busy time (wall time less the 1 s idle wait), CPU seconds
# (user + system) per million records, and peak RSS (GNU time's maximum resident set size).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WHAT="${1:-all}"
PER_SHARD="${PER_SHARD:-10000}"
SHARDS="${SHARDS:-4 16 64}"
BUDGETS="${BUDGETS-16 64 256}"
BUDGET_SHARDS="${BUDGET_SHARDS:-64}"
REPLAY_COUNT="${REPLAY_COUNT:-200000}"
BOTO3="${BOTO3:-1}"
BOTO3_SHARDS="${BOTO3_SHARDS:-$SHARDS}"
# The comparison consumer needs boto3; a fresh machine has it from PyPI in a few seconds.
if [[ "$BOTO3" != 0 ]] && ! python3 -c 'import boto3' 2>/dev/null; then
    echo "installing boto3 for the comparison consumer (BOTO3=0 skips it)..." >&2
    python3 -m pip install --quiet boto3
fi
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (Debian: apt-get install time)" >&2; exit 1; }
BASELINE_BIN="${BASELINE_BIN:-}"
REPLAY_PG="${REPLAY_PG:-}"
WORK="$(mktemp -d)"
TARGET="${CARGO_TARGET_DIR:-target}"
OPTOUT="$TARGET/release/optout"

cargo build --quiet --release --bin optout --example emulator --example twilio-mix
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$TARGET/release/examples/emulator" --port "$PORT" 2>/dev/null &
EMULATOR=$!
trap 'kill $EMULATOR 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_EC2_METADATA_DISABLED=true
# The emulator enforces no read limit: measure the headroom, not AWS's 2 MiB/s per shard
# (a build before --shard-read-mib ignores the variable).
export OPTOUT_SHARD_READ_MIB=0

# row LABEL RECORDS IDLE_SECS TIMEFILE: one Markdown row from GNU time's "%e %U %S %M".
row() {
    python3 - "$@" <<'PY'
import sys
label, n, idle, timefile = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
wall, user, sys_, rss = open(timefile).read().split()[-4:]
busy = max(float(wall) - idle, 1e-9)
cpu = float(user) + float(sys_)
per_m = cpu / n * 1e6 if n else float("nan")
print(f"| {label} | {n:,} | {n / busy:,.0f} | {per_m:.2f} | {int(rss) / 1024:.0f} MiB |")
PY
}

# drain_one LABEL BIN STREAM [FLAGS…]: drains STREAM into a fresh SQLite file with BIN.
drain_one() {
    local label="$1" bin="$2" stream="$3"
    shift 3
    local db="$WORK/$RANDOM$RANDOM.db"
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
        env OPTOUT_STORE="${STORE:-sqlite://$db}" "$bin" run --stream "$stream" --exit-when-idle 1 \
        --log-format json "$@" 2>"$WORK/log"
    local n
    n=$(grep -o '"records":[0-9]*' "$WORK/log" | tail -1 | cut -d: -f2)
    row "$label" "${n:-0}" 1 "$WORK/time"
    rm -f "$db"*
}

boto3_one() {
    local label="$1" stream="$2" db="$WORK/boto3.db"
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
        python3 scripts/bench/boto3_consumer.py "$stream" "$db" >"$WORK/n"
    # boto3 stops at the first empty, caught-up answer: no idle wait to subtract.
    row "$label" "$(cat "$WORK/n")" 0 "$WORK/time"
    rm -f "$db"*
}

backlog() {
    local stream="$1" shards="$2"
    "$OPTOUT" produce --stream "$stream" --create --shards "$shards" \
        --count $((shards * PER_SHARD)) --seed 3 >/dev/null
}

drain() {
    echo
    echo "### Draining a backlog of $PER_SHARD records per shard (SQLite)"
    echo
    echo "| run | records | records/s | CPU-s per million | peak RSS |"
    echo "|---|---:|---:|---:|---:|"
    for s in $SHARDS; do
        backlog "bench-$s" "$s"
        drain_one "optout, $s shards, 64 MB budget" "$OPTOUT" "bench-$s"
        if [ -n "$BASELINE_BIN" ]; then
            drain_one "baseline, $s shards" "$BASELINE_BIN" "bench-$s"
        fi
        if [ "$BOTO3" = 1 ] && [[ " $BOTO3_SHARDS " == *" $s "* ]]; then
            boto3_one "boto3 GetRecords→sqlite3, $s shards" "bench-$s"
        fi
    done
    [ -n "$BUDGETS" ] || return 0
    s="$BUDGET_SHARDS"
    [[ " $SHARDS " == *" $s "* ]] || backlog "bench-$s" "$s"
    for b in $BUDGETS; do
        drain_one "optout, $s shards, $b MB budget" "$OPTOUT" "bench-$s" --max-in-flight-mb "$b"
    done
}

replay_one() {
    local label="$1" n="$2"
    shift 2
    local db="$WORK/replay.db"
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" \
        env OPTOUT_STORE="${STORE:-sqlite://$db}" "$@" >/dev/null 2>&1
    row "$label" "$n" 0 "$WORK/time"
    rm -f "$db"*
}

replay() {
    local mix="$WORK/mix.jsonl"
    "$TARGET/release/examples/twilio-mix" "$REPLAY_COUNT" 3 >"$mix"
    gzip -c "$mix" >"$mix.gz"
    (cd "$WORK" && split -n l/4 -d mix.jsonl part.)
    local mb
    mb=$(du -m "$mix" | cut -f1)
    echo
    echo "### Replaying $REPLAY_COUNT records of the Twilio mix ($mb MB; SQLite)"
    echo
    echo "| run | records | records/s | CPU-s per million | peak RSS |"
    echo "|---|---:|---:|---:|---:|"
    replay_one "optout replay" "$REPLAY_COUNT" "$OPTOUT" replay "$mix"
    replay_one "optout replay, gzip" "$REPLAY_COUNT" "$OPTOUT" replay "$mix.gz"
    replay_one "optout replay, 4 files in parallel" "$REPLAY_COUNT" "$OPTOUT" replay "$WORK"/part.0*
    if [ -n "$REPLAY_PG" ]; then
        # A fresh database each run, so dedup finds nothing stored yet.
        local pgdb="optout_bench_replay_$$"
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS $pgdb" -c "CREATE DATABASE $pgdb"
        STORE="postgres://postgres@127.0.0.1:5432/$pgdb" \
            replay_one "optout replay, PostgreSQL" "$REPLAY_COUNT" "$OPTOUT" replay "$mix"
        psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE $pgdb"
    fi
    if [ -n "$BASELINE_BIN" ]; then
        replay_one "baseline replay" "$REPLAY_COUNT" "$BASELINE_BIN" replay "$mix"
    fi
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/time" python3 scripts/bench/json_loop.py "$mix" >/dev/null
    row "Python json.loads loop (no store)" "$REPLAY_COUNT" 0 "$WORK/time"
}

case "$WHAT" in
    all) drain; replay ;;
    drain) drain ;;
    replay) replay ;;
    *) echo "usage: scripts/bench-e2e.sh [all|drain|replay]" >&2; exit 2 ;;
esac
