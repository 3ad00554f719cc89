#!/usr/bin/env bash
# Smoke test of the binaries build.sh makes: etcd 3.7 and kube-apiserver 1.37.2 on loopback
# ports of their own (never the e2e cluster's),
# /readyz, the AUREN CRD applied with the built kubectl, then kube-controller-manager and
# kube-scheduler, a Deployment that gets its Pod, then everything stopped again.
# Ports: etcd 33790/33800, apiserver 26443, controller-manager 20357, scheduler 20359. State: ${AUREN_K8S_SMOKE_STATE:-/tmp/auren-k8s-smoke},
# removed at the end unless the run failed or AUREN_K8S_SMOKE_KEEP=1.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "${HERE}/../../.." && pwd)"
export AUREN_CLUSTER_STATE="${AUREN_K8S_SMOKE_STATE:-/tmp/auren-k8s-smoke}"
source "${HERE}/../lib.sh"
ETCD_CLIENT_PORT=33790
ETCD_PEER_PORT=33800
APISERVER_PORT=26443
SERVER_URL="https://127.0.0.1:${APISERVER_PORT}"
CONTROLLER_MANAGER_PORT=20357
SCHEDULER_PORT=20359
COMPONENTS=(kube-scheduler kube-controller-manager kube-apiserver etcd)

# One self-signed serving certificate (it is its own CA), a service-account key pair and a
# static admin token: enough for an API server without controllers or nodes.
make_pki() {
  mkdir -p "$PKI_DIR"
  (
    cd "$PKI_DIR"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.crt \
      -days 1 -subj "/CN=kube-apiserver" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
    cp apiserver.crt ca.crt
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    local token
    token=$(openssl rand -hex 16)
    echo "${token},auren-admin,auren-admin,\"system:masters\"" >tokens.csv
    echo "$token" >admin.token
  )
  gen_front_proxy_pki
}

start_etcd() {
  start_local_etcd "${ETCD_BIN}/etcd" auren-smoke
}

# The shared flags, without a node (no endpoints reconciler, no ServiceAccount admission).
start_apiserver() {
  # shellcheck disable=SC2046  # the flags are words
  start_component kube-apiserver "${K8S_BIN}/kube-apiserver" \
    $(apiserver_shared_flags) --advertise-address 127.0.0.1 --endpoint-reconciler-type none \
    --disable-admission-plugins ServiceAccount,TaintNodesByCondition
}

# As up.sh, but both components act as the admin user here (the smoke run has no per-component
# tokens).
start_controller_manager() {
  local kc="${STATE_DIR}/admin.kubeconfig"
  start_component kube-controller-manager "${K8S_BIN}/kube-controller-manager" \
    --kubeconfig "$kc" \
    --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "${CONTROLLER_MANAGER_PORT}" \
    --controllers '*,-node-ipam-controller,-node-lifecycle-controller' \
    --use-service-account-credentials=false \
    --service-account-private-key-file "${PKI_DIR}/sa.key" \
    --root-ca-file "${PKI_DIR}/ca.crt" \
    --flex-volume-plugin-dir "${STATE_DIR}/flexvolume" \
    --leader-elect=false \
    --profiling=false
}

start_scheduler() {
  local kc="${STATE_DIR}/admin.kubeconfig"
  start_component kube-scheduler "${K8S_BIN}/kube-scheduler" \
    --kubeconfig "$kc" \
    --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "${SCHEDULER_PORT}" \
    --leader-elect=false \
    --profiling=false
}

apiserver_ready() { [[ "$(api_get /readyz)" == ok ]]; }

component_healthy() {
  [[ "$(curl -sfk --max-time 2 "https://127.0.0.1:$1/healthz")" == ok ]]
}

# stop_all RC: the state (logs included) stays when the run failed or AUREN_K8S_SMOKE_KEEP=1.
pod_created() { [[ -n "$("${K8S_BIN}/kubectl" --kubeconfig "$KUBECONFIG_PATH" get pods -l app=smoke -o name)" ]]; }

stop_all() {
  local c
  for c in "${COMPONENTS[@]}"; do stop_component "$c"; done
  if [[ $1 == 0 && "${AUREN_K8S_SMOKE_KEEP:-0}" != 1 ]]; then
    rm -rf "$STATE_DIR"
  else
    log "state and logs kept in ${STATE_DIR}"
  fi
}

main() {
  eval "$(bash "${HERE}/build.sh" all)"
  local c
  for c in "${COMPONENTS[@]}"; do
    pid_alive "$c" && { log "${c} of an earlier smoke run is still running"; exit 1; }
  done
  rm -rf "$STATE_DIR"
  mkdir -p "$STATE_DIR"
  trap 'stop_all $?' EXIT
  make_pki
  write_kubeconfig "$KUBECONFIG_PATH" auren-admin "$(admin_token)"
  cp "$KUBECONFIG_PATH" "${STATE_DIR}/admin.kubeconfig"
  local start=$SECONDS
  start_etcd
  start_apiserver
  wait_for kube-apiserver 90 apiserver_ready
  log "kube-apiserver ready $((SECONDS - start)) s after etcd started"
  local kubectl=("${K8S_BIN}/kubectl" --kubeconfig "$KUBECONFIG_PATH")
  "${kubectl[@]}" version >&2
  "${kubectl[@]}" apply --server-side -f "${ROOT}/crds/aurenruntime.yaml" >&2
  "${kubectl[@]}" wait --for condition=Established --timeout 30s \
    -f "${ROOT}/crds/aurenruntime.yaml" >&2
  start_controller_manager
  start_scheduler
  wait_for kube-controller-manager 60 component_healthy "$CONTROLLER_MANAGER_PORT"
  wait_for kube-scheduler 60 component_healthy "$SCHEDULER_PORT"
  # The Deployment and ReplicaSet controllers at work: a Deployment gets its ReplicaSet and a
  # Pod (Pending: no node). The scheduler only has to be healthy.
  "${kubectl[@]}" create deployment smoke --image=registry.invalid/none:0 >&2
  wait_for "the smoke Deployment's pod" 60 pod_created
  log "smoke test passed"
}

main "$@"
