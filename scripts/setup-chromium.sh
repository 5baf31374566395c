#!/usr/bin/env bash
# What the console's browser tests need: the distribution's Chromium (Playwright drives it;
# no browser is ever downloaded by a test tool). Installed from Debian's packages when missing.
set -euo pipefail
if command -v chromium >/dev/null || [ -n "${CHROMIUM:-}" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup-chromium: no chromium, and it cannot be installed here (apt-get as root)" >&2
  exit 1
fi
echo "setup-chromium: installing Debian's chromium (~1 min)"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
