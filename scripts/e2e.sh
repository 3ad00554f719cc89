#!/usr/bin/env bash
# The e2e tier: builds and starts the local cluster (cached control plane), runs the e2e
# crate's tests against it, and stops it.
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"
bash e2e/cluster/build.sh
cargo build --locked -p auren-runtime -p e2e --bins
export AUREN_CLUSTER_STARTED=1
eval "$(bash e2e/cluster/up.sh | grep '^export KUBECONFIG=')"
trap 'bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
cargo test --locked -p e2e --no-fail-fast -- --test-threads=1
