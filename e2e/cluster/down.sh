#!/usr/bin/env bash
# Stop everything up.sh started, newest first. Idempotent.
#   down.sh           stop the node and the control plane (state is kept)
#   down.sh --nodes   stop only the node (real-node.sh down)
#   down.sh --purge   stop everything and delete the state dir (etcd data, certs, logs)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

components=(metrics-server kube-scheduler kube-controller-manager kube-apiserver etcd)
[[ "${1:-}" == "--nodes" ]] && components=()
# the node (real-node.sh) first: its pods' containers, then its daemons and network
# (also when only its network came up: the bridge, the guards and the API server forwarder)
if [[ -d /run/auren-node || -d "${AUREN_NODE_DIR:-/var/lib/auren-node}" ]] || pid_alive kubelet ||
  pid_alive apiserver-forwarder || ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
  bash "$(dirname "${BASH_SOURCE[0]}")/real-node.sh" down
fi
for name in "${components[@]}"; do
  stop_component "$name"
done
if [[ "${1:-}" == "--purge" ]]; then
  log "removing ${STATE_DIR}"
  rm -rf "${STATE_DIR}"
fi
log "stopped"
