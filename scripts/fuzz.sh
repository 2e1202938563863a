#!/usr/bin/env bash
# The long fuzz run of the record decoder (tests/decode/fuzz/): a release build, a random
# seed (printed, so a failure can be replayed with FUZZ_SEED=...), and a time budget.
#
# Duration: 30 minutes by default (FUZZ_SECONDS=1800), on one core; the report at the end gives
# the inputs run and their rate. `.ci/run` runs it for 2 minutes on the test suite's debug
# build (FUZZ_PROFILE=debug: no release build to wait for) after the 20,000-input smoke run
# (`fuzz_smoke`, part of the suite); run the long one by hand before a release, or on a
# schedule of your own (nothing in this repository schedules it).
#
#   scripts/fuzz.sh                      # 30 minutes, random seed, release build
#   FUZZ_SECONDS=14400 scripts/fuzz.sh   # 4 hours
#   FUZZ_SEED=0x1234 scripts/fuzz.sh     # replay a seed
#   FUZZ_SECONDS=120 FUZZ_PROFILE=debug scripts/fuzz.sh   # what CI runs
#
# Exits non-zero on the first panic, disagreement with the reference decoder or invariant
# violation, with the input (hex and base64) and a minimised version of it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export FUZZ_SECONDS="${FUZZ_SECONDS:-1800}"
# No iteration limit of its own: the time budget decides.
export FUZZ_ITERATIONS="${FUZZ_ITERATIONS:-18446744073709551615}"
case "${FUZZ_PROFILE:-release}" in
    release) profile=(--release) ;;
    debug) profile=() ;;
    *) echo "FUZZ_PROFILE must be release or debug" >&2; exit 2 ;;
esac
echo "== fuzzing the decoder for ${FUZZ_SECONDS} s (${FUZZ_PROFILE:-release} build)"
cargo test "${profile[@]}" --locked --test decode -- fuzz::fuzz_decoder --ignored --nocapture --exact
