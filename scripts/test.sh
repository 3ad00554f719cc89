#!/usr/bin/env bash
# `make test`: installs what the tests need, starts PostgreSQL and the broker, runs every tier,
# and stops what it started (also on failure or Ctrl-C). Tiers: lint, unit+integration
# (cargo test against the real services), e2e (local Kubernetes control plane), packaging.
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"

TIERS="${AUREN_TIERS:-lint test e2e package}"
export AUREN_STATE="${AUREN_STATE_OVERRIDE:-$(mktemp -d "${TMPDIR:-/tmp}/auren-test.XXXXXX")}"
chmod 755 "$AUREN_STATE"

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  say "stopping services"
  bash scripts/broker.sh stop || true
  bash scripts/postgres.sh stop || true
  if has_tier e2e; then bash e2e/cluster/down.sh >/dev/null 2>&1 || true; fi
  rm -rf "$AUREN_STATE"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

has_tier() { [[ " $TIERS " == *" $1 "* ]]; }

started=$(date +%s)
bash scripts/deps.sh
bash scripts/broker.sh install

if has_tier lint; then
  say "tier: lint (rustfmt, clippy -D warnings, no import circles between modules)"
  cargo fmt --all --check
  cargo clippy --workspace --all-targets --locked -- -D warnings
  python3 scripts/module_cycles.py --self-test
  python3 scripts/e2e_lanes.py --self-test
  python3 scripts/module_cycles.py contract/src runtime/src operator/src kubectl-auren/src testkit/src
fi

if has_tier test; then
  say "tier: unit + integration (real PostgreSQL, real Apache Kafka broker)"
  bash scripts/postgres.sh start
  bash scripts/broker.sh start
  cargo test --workspace --exclude e2e --locked --no-fail-fast
fi

if has_tier e2e; then
  say "tier: e2e (local Kubernetes control plane)"
  bash scripts/e2e.sh
fi

if has_tier package && [ -x scripts/package-checks.sh ]; then
  say "tier: packaging (helm, manifests, Argo CD health)"
  bash scripts/package-checks.sh
fi

say "all tiers passed in $(( $(date +%s) - started ))s"
