#!/usr/bin/env bash
# Readiness-gate follow time (issue 16): 10 API pods, the broker frozen 10 times (100 gate
# reopenings) on the local cluster; prints the operator's follow p50/p99 and the time from the
# broker's return to the gates seen open. docs/reliability.md quotes it.
#   bash scripts/bench-gates.sh [OUTAGES] [PODS]
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"
bash scripts/deps.sh e2e >/dev/null
cargo build --locked -q --bins -p auren-runtime -p auren-operator
trap 'bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
eval "$(bash e2e/cluster/up.sh | tail -n1)"
export AUREN_TEST_SERVICE_HOST=10.244.0.1   # the broker where the runtime's containers reach it
say "gate follow: ${1:-10} outages x ${2:-10} API pods"
AUREN_GATE_OUTAGES="${1:-10}" AUREN_GATE_PODS="${2:-10}" \
  cargo test --locked -q -p e2e --test gate_follow -- --nocapture 2>&1 \
  | grep -E '^(outage|gate reopenings|from the broker|test result)'
