#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 with a `test` database, starting the
# machine's cluster if it is installed but down (Debian's pg_ctlcluster).
set -euo pipefail

ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }

if ! ready; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        echo "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    for _ in $(seq 60); do ready && break; sleep 0.5; done
fi
if ! ready; then
    echo "ensure-postgres: PostgreSQL is not answering on 127.0.0.1:5432;" \
        "install it (apt-get install postgresql) or set OPTOUT_TEST_PG" >&2
    exit 1
fi
psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" \
    | grep -q 1 || psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test"
echo "PostgreSQL ready on 127.0.0.1:5432"
