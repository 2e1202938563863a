#!/usr/bin/env bash
# How long a "stop texting me" takes from the stream to Twilio's Consent API: `optout run
# --twilio-consent revocations` (SQLite, ferrokinesis, the default dispatcher poll of 250 ms,
# the tests' consumer poll of 100 ms) against the fake Consent API of the tests, each
# revocation put alone and timed from its PutRecords to its arrival. The aim (issue 20): within
# 2 s at p99 while under the rate limit. The test suite does not assert time; this script
# measures it and exits 1 over the aim.
#
#   scripts/measure-consent-latency.sh                  # 100 revocations
#   SAMPLES=300 scripts/measure-consent-latency.sh
#
# Each run is tests/e2e/deliver.rs
# `a_phrase_revocation_in_the_stream_reaches_the_consent_api_and_a_stop_does_not`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SAMPLES="${SAMPLES:-100}"
TEST=deliver::a_phrase_revocation_in_the_stream_reaches_the_consent_api_and_a_stop_does_not

scripts/install-twilio-helper.sh >/dev/null
cargo test --quiet --test e2e --no-run
if ! out="$(OPTOUT_LATENCY_SAMPLES="$SAMPLES" cargo test --quiet --test e2e -- --exact "$TEST" --nocapture 2>&1)"; then
    echo "$out" | tail -40 >&2
    echo "the test failed" >&2
    exit 1
fi
line="$(grep '^consent latency ms:' <<<"$out")"
echo "stream → Consent API, $line"
p99="$(sed -n 's/.* p99 \([0-9]*\) .*/\1/p' <<<"$line")"
if (( p99 > 2000 )); then
    echo "p99 ${p99} ms is over the 2 s aim" >&2
    exit 1
fi
