#!/usr/bin/env bash
# The e2e tier: builds (or reuses) the control plane, builds the binaries the pods and tests
# run, brings the local cluster up, runs the e2e crate's tests against it, and stops it.
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"
bash e2e/cluster/build.sh
cargo build --locked --bins -p auren-runtime -p auren-operator -p e2e
trap 'bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
eval "$(bash e2e/cluster/up.sh | tail -n1)"
kubectl get nodes 2>/dev/null
cargo test --locked -p e2e --no-fail-fast -- --test-threads=1
