#!/usr/bin/env bash
# Installs the `kinesis-local` Kinesis emulator (npm, pinned) into the crate root's node_modules/,
# where tests/common/emulator.rs and scripts/kinesis-local.sh look for it. Idempotent: does nothing
# when the pinned version is already there. Needs Node.js (>= 18) and npm on PATH.
set -euo pipefail

VERSION="0.6.2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG="$ROOT/node_modules/kinesis-local"

for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "install-kinesis-local: '$tool' not found; install Node.js 20 and npm first" \
            "(Debian: apt-get install nodejs npm)" >&2
        exit 1
    fi
done

installed="$(node -p "require('$PKG/package.json').version" 2>/dev/null || true)"
if [[ "$installed" == "$VERSION" && -f "$PKG/main.js" ]]; then
    echo "kinesis-local $VERSION already installed in $PKG"
    exit 0
fi

# --prefix keeps npm from walking up to another package.json; --no-save leaves no
# package.json/package-lock.json in the crate root.
npm install --prefix "$ROOT" --no-audit --no-fund --no-save --no-package-lock \
    "kinesis-local@$VERSION"

if [[ ! -f "$PKG/main.js" ]]; then
    echo "install-kinesis-local: $PKG/main.js missing after npm install" >&2
    exit 1
fi
echo "kinesis-local $VERSION installed in $PKG"
