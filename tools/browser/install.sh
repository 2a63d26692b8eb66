#!/usr/bin/env bash
# Debian's Chromium for the browser tests (tests/browser/), plus a Korean font so the Korean pages' screenshots show
# Hangul. Playwright cannot download its own browser build here, so the tests launch /usr/bin/chromium instead.
# Idempotent: does nothing when both are there. Needs root (apt-get) only when something is missing.
set -euo pipefail

CHROMIUM=${NUDGE_CHROMIUM:-/usr/bin/chromium}
packages=()
[ -x "$CHROMIUM" ] || packages+=(chromium)
if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=ko family 2>/dev/null)" ]; then
  packages+=(fonts-nanum)
fi
[ ${#packages[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "tools/browser/install.sh: missing ${packages[*]} and cannot apt-get them (needs root on Debian);" \
       "install them, or point NUDGE_CHROMIUM at a Chromium binary" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
[ -x "$CHROMIUM" ] || { echo "tools/browser/install.sh: $CHROMIUM still missing after apt-get" >&2; exit 1; }
echo "installed ${packages[*]}"
