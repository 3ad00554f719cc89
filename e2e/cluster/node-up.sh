#!/usr/bin/env bash
# Build (cargo, incremental) and start the node side of the local cluster:
# auren-node-agent (node auren-node-1 running pods as processes, fake node
# auren-scale-1) and auren-service-proxy. Needs the control plane (up.sh).
# Idempotent. Env:
#   AUREN_IMAGE_CONFIG   image mapping (default e2e/cluster/images.yaml)
#   AUREN_FAKE_NODES     comma-separated fake nodes (default auren-scale-1)
#   CARGO_TARGET_DIR     default ${AUREN_CACHE:-$HOME/.cache/auren}/target
#   AUREN_NO_BUILD=1     start the binaries already built (a fault test restarting a
#                        component must not wait for, or pick up, a half-edited tree)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${CACHE_DIR}/target}"
export KUBECONFIG="${KUBECONFIG_PATH}"
export AUREN_CLUSTER_STATE="${STATE_DIR}"
export AUREN_IMAGE_CONFIG="${AUREN_IMAGE_CONFIG:-${E2E_DIR}/cluster/images.yaml}"
export AUREN_FAKE_NODES="${AUREN_FAKE_NODES:-auren-scale-1}"
BIN="${CARGO_TARGET_DIR}/debug"

if pid_alive auren-node-agent && pid_alive auren-service-proxy; then
  exit 0
fi
if [[ "${AUREN_NO_BUILD:-}" == 1 && -x "${BIN}/auren-node-agent" && -x "${BIN}/auren-service-proxy" ]]; then
  log "AUREN_NO_BUILD=1: starting the binaries in ${BIN}"
else
  log "building node side (cargo build -p e2e --bins)"
  (cd "${E2E_DIR}/.." && cargo build --quiet -p e2e --bins) >&2
fi

pid_alive auren-node-agent || start_component auren-node-agent "${BIN}/auren-node-agent"
pid_alive auren-service-proxy || start_component auren-service-proxy "${BIN}/auren-service-proxy"

node_ready() {
  [[ "$(api_get /api/v1/nodes/auren-node-1 | grep -Ec '"type": ?"Ready"')" -ge 1 ]] &&
    [[ -s "${STATE_DIR}/services.json" ]]
}
for ((i = 0; i < 150; i++)); do
  node_ready && break
  pid_alive auren-node-agent || { log "node agent exited; see ${LOG_DIR}/auren-node-agent.log"; exit 1; }
  pid_alive auren-service-proxy || { log "proxy exited; see ${LOG_DIR}/auren-service-proxy.log"; exit 1; }
  sleep 0.2
done
node_ready || { log "node not registered in time"; exit 1; }
log "node side ready"
