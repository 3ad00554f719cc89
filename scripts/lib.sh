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

# The broker: Apache Kafka from Maven Central (scripts/kafka/pom.xml), its jars checked against
# scripts/kafka/jars.sha256 and kept in a folder keyed by both files.
KAFKA_KEY="$(cat "$AUREN_ROOT/scripts/kafka/pom.xml" "$AUREN_ROOT/scripts/kafka/jars.sha256" | sha256sum | cut -c1-16)"
export KAFKA_LIBS="$AUREN_CACHE/kafka/$KAFKA_KEY/libs"
export AUREN_KAFKA_SERVER="$AUREN_ROOT/scripts/kafka/server.sh"

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
