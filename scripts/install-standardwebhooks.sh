#!/usr/bin/env bash
# Installs the Standard Webhooks reference library for Python (PyPI `standardwebhooks`,
# pinned) into the crate root's .standardwebhooks-venv/, where tests/common/webhook_receiver.rs
# looks for it: the signed-webhook tests check optout's signatures with that independent
# implementation, never with optout's own code. Idempotent. Needs python3 with venv.
set -euo pipefail

VERSION="1.1.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.standardwebhooks-venv"

if "$VENV/bin/python" -c "
import sys, importlib.metadata as m
sys.exit(m.version('standardwebhooks') != '$VERSION')" 2>/dev/null; then
    echo "standardwebhooks $VERSION already installed in $VENV"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "install-standardwebhooks: python3 not found; install Python 3 first" \
        "(Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi
rm -rf "$VENV"
if ! python3 -m venv "$VENV"; then
    echo "install-standardwebhooks: cannot create a venv; install python3-venv" \
        "(Debian: apt-get install python3-venv)" >&2
    exit 1
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input \
    "standardwebhooks==$VERSION"
"$VENV/bin/python" -c "import standardwebhooks; print('standardwebhooks $VERSION installed in $VENV')"
