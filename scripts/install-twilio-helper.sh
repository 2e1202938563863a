#!/usr/bin/env bash
# Installs Twilio's Python helper library (PyPI `twilio`, pinned) into the crate root's
# .twilio-venv/, where tests/common/twilio.rs looks for it: the webhook tests sign their
# requests with Twilio's own RequestValidator, an implementation independent of optout's.
# Idempotent: does nothing when the pinned version is already there. Needs python3 with venv
# (Debian: apt-get install python3-venv).
set -euo pipefail

VERSION="9.13.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.twilio-venv"

if "$VENV/bin/python" -c "import sys, twilio; sys.exit(twilio.__version__ != '$VERSION')" \
    2>/dev/null; then
    echo "twilio $VERSION already installed in $VENV"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "install-twilio-helper: python3 not found; install Python 3 first" \
        "(Debian: apt-get install python3 python3-venv)" >&2
    exit 1
fi
rm -rf "$VENV"
if ! python3 -m venv "$VENV"; then
    echo "install-twilio-helper: cannot create a venv; install python3-venv" \
        "(Debian: apt-get install python3-venv)" >&2
    exit 1
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-input "twilio==$VERSION"
"$VENV/bin/python" -c "import twilio; print('twilio', twilio.__version__, 'installed in $VENV')"
