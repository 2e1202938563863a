#!/usr/bin/env bash
# Runs the kinesis-local Kinesis emulator in the foreground (Ctrl-C or SIGTERM stops it), for
# people and CI scripts. Plain HTTP on $PORT (default 4567), TLS on $TLS_PORT (default PORT+1).
# Both listen on all interfaces (kinesis-local cannot bind one address). State delays are zero
# unless set in the environment; nothing is persisted. Install it first with
# scripts/install-kinesis-local.sh.
#
#   PORT=4567 scripts/kinesis-local.sh
#   AWS_ENDPOINT_URL=http://127.0.0.1:4567 AWS_REGION=us-east-1 \
#     AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test optout ...
#
# Ready when `curl -sf http://127.0.0.1:$PORT/healthcheck` succeeds (about 1 s).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="${KINESIS_LOCAL_DIR:-$ROOT/node_modules/kinesis-local}"
PORT="${PORT:-4567}"
TLS_PORT="${TLS_PORT:-$((PORT + 1))}"

if ! command -v node >/dev/null 2>&1; then
    echo "kinesis-local.sh: 'node' not found; install Node.js 20" >&2
    exit 1
fi
if [[ ! -f "$PKG/main.js" ]]; then
    echo "kinesis-local.sh: $PKG/main.js not found; run scripts/install-kinesis-local.sh" >&2
    exit 1
fi

for op in CREATE_STREAM DELETE_STREAM REGISTER_STREAM_CONSUMER DEREGISTER_STREAM_CONSUMER \
    START_STREAM_ENCRYPTION STOP_STREAM_ENCRYPTION MERGE_SHARDS SPLIT_SHARD \
    UPDATE_SHARD_COUNT UPDATE_STREAM_MODE; do
    var="${op}_DURATION"
    export "$var=${!var:-0ms}"
done
export KINESIS_MOCK_PLAIN_PORT="$PORT"
export KINESIS_MOCK_TLS_PORT="$TLS_PORT"
export KINESIS_MOCK_CERT_PATH="${KINESIS_MOCK_CERT_PATH:-$PKG/server.json}"
export SHARD_LIMIT="${SHARD_LIMIT:-1000}"
export SHOULD_PERSIST_DATA="${SHOULD_PERSIST_DATA:-false}"
export LOAD_DATA_IF_EXISTS="${LOAD_DATA_IF_EXISTS:-false}"
export LOG_LEVEL="${LOG_LEVEL:-INFO}"

echo "kinesis-local: http://127.0.0.1:$PORT (TLS on $TLS_PORT)" >&2
exec node "$PKG/main.js"
