#!/usr/bin/env bash
# NDJSON exports against `optout serve` on SQLite: peak memory of the server and how fast
# /readyz answers while PARALLEL exports of COUNT opt events run at once. Then keyset paging
# while a writer commits: every event is paged through (`?limit=2000&cursor=…`) while `optout
# replay` adds COUNT/2 more with interleaved times; each first event must come back exactly once.
#
#   scripts/measure-export.sh                      # debug build, 200,000 events, 8 exports
#   PROFILE=release COUNT=1000000 PARALLEL=16 scripts/measure-export.sh
#
# The events are the inbound-stop-v5 fixture with a fresh id, number and time each, loaded with
# `optout replay`; /readyz is asked every 50 ms for as long as the exports run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COUNT="${COUNT:-200000}"
PARALLEL="${PARALLEL:-8}"
PROFILE="${PROFILE:-debug}"
PORT="${PORT:-18080}"
TARGET="${CARGO_TARGET_DIR:-target}"
if [[ "$PROFILE" == release ]]; then
    cargo build --quiet --release --bin optout
else
    cargo build --quiet --bin optout
fi
BIN="$TARGET/$PROFILE/optout"
WORK="$(mktemp -d)"
trap 'kill "${SERVER:-0}" 2>/dev/null || true; rm -rf "$WORK"' EXIT

python3 - "$COUNT" "$WORK/events.jsonl" <<'PY'
import json, sys
count, path = int(sys.argv[1]), sys.argv[2]
template = json.load(open("tests/fixtures/inbound-stop-v5.json"))
with open(path, "w") as out:
    for i in range(count):
        e = json.loads(json.dumps(template))
        e["id"] = f"EZ{i:032x}"
        e["data"]["from"] = f"+1555{i:07d}"
        e["data"]["optOutType"] = "STOP" if i % 3 else "START"
        t = f"2026-03-01T{(i // 3600000) % 24:02d}:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{i % 1000:03d}Z"
        e["data"]["timestamp"] = e["time"] = t
        out.write(json.dumps(e, separators=(",", ":")) + "\n")
PY
"$BIN" --store "sqlite://$WORK/export.db" replay "$WORK/events.jsonl" >/dev/null 2>&1
"$BIN" --store "sqlite://$WORK/export.db" serve --http-addr "127.0.0.1:$PORT" \
    >"$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done

(while [[ ! -e "$WORK/done" ]]; do
    curl -s -o /dev/null -w "%{time_total}\n" "http://127.0.0.1:$PORT/readyz"
    sleep 0.05
done) >"$WORK/readyz.txt" &
PROBE=$!
START=$(date +%s.%N)
for k in $(seq "$PARALLEL"); do
    curl -s -H 'Accept: application/x-ndjson' "http://127.0.0.1:$PORT/v1/events" \
        | wc -l >"$WORK/lines.$k" &
done
wait $(jobs -p | grep -v "^$PROBE\$" | grep -v "^$SERVER\$")
END=$(date +%s.%N)
touch "$WORK/done"
wait "$PROBE"

echo "$PARALLEL NDJSON exports of $COUNT events ($PROFILE build, SQLite)"
echo "  lines per export:  $(sort -u "$WORK"/lines.* | tr '\n' ' ')"
echo "  wall time:         $(awk -v a="$START" -v b="$END" 'BEGIN {printf "%.1f", b - a}') s"
echo "  server peak RSS:   $(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$SERVER/status")"
sort -n "$WORK/readyz.txt" | awk '{a[NR] = $1 * 1000}
    END {p99 = int(NR * 0.99) + 1; if (p99 > NR) p99 = NR;
         printf "  /readyz (%d probes): p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
         NR, a[int(NR / 2) + 1], a[p99], a[NR]}'

python3 - "$COUNT" "$WORK/more.jsonl" <<'PY'
import json, sys
count, path = int(sys.argv[1]) // 2, sys.argv[2]
template = json.load(open("tests/fixtures/inbound-stop-v5.json"))
with open(path, "w") as out:
    for i in range(count):
        e = json.loads(json.dumps(template))
        e["id"] = f"EY{i:032x}"
        e["data"]["from"] = f"+1666{i:07d}"
        t = f"2026-03-01T{(i // 3600000) % 24:02d}:{(i // 60000) % 60:02d}:{(i // 1000) % 60:02d}.{(i * 7) % 1000:03d}Z"
        e["data"]["timestamp"] = e["time"] = t
        out.write(json.dumps(e, separators=(",", ":")) + "\n")
PY
python3 - "$COUNT" "$PORT" "$BIN" "sqlite://$WORK/export.db" "$WORK/more.jsonl" <<'PY'
import collections, json, subprocess, sys, urllib.request
count, port, binary, store, more = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
seen, cursor, pages, writer = collections.Counter(), None, 0, None
while True:
    url = f"http://127.0.0.1:{port}/v1/events?limit=2000" + (f"&cursor={cursor}" if cursor else "")
    page = json.load(urllib.request.urlopen(url))
    pages += 1
    seen.update(item["event_id"] for item in page["items"])
    if writer is None:
        writer = subprocess.Popen([binary, "--store", store, "replay", more],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cursor = page["next_cursor"]
    if not cursor:
        break
during = writer.poll() is None
writer.wait()
first = sum(1 for k in seen if k.startswith("EZ"))
added = sum(1 for k in seen if k.startswith("EY"))
repeated = sum(1 for c in seen.values() if c > 1)
print(f"keyset paging while a writer commits: {pages} pages, {first} of {count} events seen, "
      f"{added} added during paging also seen, {repeated} repeated"
      f"{' (the writer was still running at the end)' if during else ''}")
sys.exit(0 if first == count and repeated == 0 else 1)
PY
