#!/usr/bin/env bash
# Stop everything up.sh (and node-up.sh) started, newest first. Idempotent.
# `down.sh --purge` also deletes the state dir (etcd data, certs, logs).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

for name in auren-service-proxy auren-node-agent kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop_component "$name"
done
if [[ "${1:-}" == "--purge" ]]; then
  log "removing ${STATE_DIR}"
  rm -rf "${STATE_DIR}"
fi
log "stopped"
