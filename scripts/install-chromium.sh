#!/usr/bin/env bash
# Installs headless Chromium and its WebDriver from Debian's packages (`chromium`,
# `chromium-driver`), for the web console's browser test (tests/e2e/console_browser.rs).
# Idempotent: does nothing when both are on the PATH. Needs root (as CI runs) or sudo.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium and chromedriver already installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
chromium --version
chromedriver --version
