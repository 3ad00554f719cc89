#!/usr/bin/env bash
# Installs the system packages the build and the tests need (idempotent; apt only when missing).
# `deps.sh e2e` adds what only the e2e tier needs: Chromium and its WebDriver, for the
# dashboard's browser test (e2e/tests/dashboard.rs).
source "$(dirname "$0")/lib.sh"

PACKAGES=(cmake libcurl4-openssl-dev pkg-config postgresql-15 lua5.1 lua-cjson openssl python3-venv)
E2E_PACKAGES=(chromium chromium-driver)
[ "${1:-}" = e2e ] && PACKAGES+=("${E2E_PACKAGES[@]}")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  [ "$(id -u)" = 0 ] || die "need root to apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  }
fi
# The Debian postgresql package auto-creates and may start a cluster on 5432; we never use it.
command -v cargo >/dev/null || die "cargo not found (the rust toolchain is part of this machine kind)"
