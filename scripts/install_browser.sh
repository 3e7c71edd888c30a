#!/usr/bin/env bash
# Install what tests/test_browser.py needs: Debian's headless Chromium (/usr/bin/chromium) and a
# font. Playwright (in requirements.txt) drives it with executable_path; no browser is ever
# downloaded at run time. Idempotent and quiet: returns at once when Chromium already runs, and
# runs `apt-get update` only when the package cannot be installed from the current lists.
# Needs root (or sudo) the first time. Usage: bash scripts/install_browser.sh
set -euo pipefail

CHROMIUM=${NTKLIT_CHROMIUM:-/usr/bin/chromium}
PACKAGES=(chromium fonts-liberation)

if [ -x "$CHROMIUM" ] && "$CHROMIUM" --headless --no-sandbox --version >/dev/null 2>&1; then
  echo "[browser] $("$CHROMIUM" --version 2>/dev/null) is installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "[browser] need root (or sudo) to apt-get install ${PACKAGES[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg (e.g. a parallel CI step) instead of failing on the lock.
APT=("${SUDO[@]}" apt-get -qq -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

install() {
  "${APT[@]}" install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null
}

echo "[browser] installing ${PACKAGES[*]} with apt-get"
# Try the existing package lists first (fast); refresh them only when that fails (no lists yet,
# or stale lists pointing at versions the mirror no longer has).
if ! install 2>/dev/null; then
  echo "[browser] apt-get update"
  "${APT[@]}" update >/dev/null
  install
fi

if ! "$CHROMIUM" --headless --no-sandbox --version >/dev/null 2>&1; then
  echo "[browser] $CHROMIUM does not run after installing ${PACKAGES[*]}" >&2
  exit 1
fi
echo "[browser] $("$CHROMIUM" --version 2>/dev/null) installed"
