#!/usr/bin/env bash
# The whole test suite, as the README's quick start runs it: unit and integration tests against
# the in-process ferrokinesis emulator, SQLite and PostgreSQL, then the end-to-end scenarios
# again against kinesis-local (npm), so nothing depends on one emulator's quirks.
#
# Needs: cargo, Node.js + npm (kinesis-local is installed into node_modules/ on first use),
# python3 with venv (Twilio's helper library, which signs the webhook tests' requests, is
# installed into .twilio-venv/ on first use, and the Standard Webhooks library, which checks
# the signed webhooks optout sends, into .standardwebhooks-venv/), headless Chromium and
# chromedriver for the web console's browser test (Debian's packages, installed here on first
# use), and
# PostgreSQL on 127.0.0.1:5432 with trust auth and a `test` database (started here if it is
# installed but down). OPTOUT_TEST_PG overrides the admin URL. tests/pg_restart.rs restarts the
# local Debian cluster (pg_ctlcluster, as root) and fails where it cannot, unless
# OPTOUT_TEST_SKIP_PG_RESTART=1 (then it prints that it skipped).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-kinesis-local.sh
scripts/install-twilio-helper.sh
scripts/install-standardwebhooks.sh
scripts/install-chromium.sh
scripts/ensure-postgres.sh

echo "== cargo test (ferrokinesis, SQLite, PostgreSQL)"
cargo test --workspace --all-targets --locked

echo "== end-to-end scenarios against kinesis-local (polling, fan-out, faults, several workers)"
# The skipped tests need ferrokinesis-only settings (1 s iterators or sessions, a 60k backlog)
# or no emulator at all, and already ran above.
OPTOUT_TEST_EMULATOR=kinesis-local cargo test --locked --test e2e -- \
    scenarios:: resume:: reshard:: positions:: cli:: http:: fanout:: faults:: workers:: \
    poison:: log_hygiene:: webhooks::one_stop shutdown:: honor:: --skip query_cli \
    --skip twenty_kills --skip expired_iterators --skip latest_survives \
    --skip expiring_subscriptions --skip a_deregistered_consumer \
    --skip database_refusals --skip replay_stores
