#!/usr/bin/env bash
# Builds the operator, runtime and pause images (OCI archives) from the Dockerfile without a
# Docker engine: the builder stage's cargo command on the host, then scripts/images.py (buildah,
# vfs storage). Cached under $AUREN_CACHE/images/<key> (key: binaries + Dockerfile + script).
# Last line of stdout: the folder holding runtime.tar, operator.tar, pause.tar and sizes.json.
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"

apt_ensure buildah gcc ca-certificates

# The Dockerfile's builder stage, same packages and flags (its guard runs in images.py check).
say "images: cargo build --release (the Dockerfile's builder stage)"
LIBZ_SYS_STATIC=1 cargo build --release --locked -p auren-runtime -p auren-operator --bins >&2
release="$CARGO_TARGET_DIR/release"

key="$(python3 scripts/images.py key "$release")"
out="$AUREN_CACHE/images/$key"
if [ ! -s "$out/sizes.json" ]; then
  exec 9>"$AUREN_CACHE/images.lock"
  flock 9
  if [ ! -s "$out/sizes.json" ]; then
    find "$AUREN_CACHE/images" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} + 2>/dev/null || true
    rm -rf "$out"
    python3 scripts/images.py build "$out" "$release" >&2
  fi
fi
echo "$out"
