#!/usr/bin/env bash
# Start the local Kubernetes: a v1.37.2 control plane (etcd 3.7.4, kube-apiserver,
# kube-controller-manager, kube-scheduler) on loopback and one real node (real-node.sh: kubelet,
# kube-proxy, containerd, runc) running the images built by scripts/images.sh (AUREN_IMAGES
# names their folder; built when unset). Every binary is built from pinned Go modules by
# k8s/build.sh and cached. Idempotent: components already running are left alone.
# `up.sh --control-plane-only` leaves the node side alone. Last line of stdout:
#   export KUBECONFIG=<state dir>/kubeconfig PATH=<the cluster's kubectl>:$PATH
# Env: AUREN_CLUSTER_STATE (default e2e/.state), AUREN_CACHE (default ~/.cache/auren),
# AUREN_K8S_MINOR (1.37, the default, or 1.34: k8s/build.sh builds v1.34.12's control plane,
# kubelet, kube-proxy and kubectl instead; etcd and containerd/runc/CNI stay the same).
# A running cluster of another minor is not reused: up.sh stops with a message (down.sh first).
# AUREN_METRICS_SERVER=1 also runs metrics-server v0.8.1 (built by `k8s/build.sh metrics-server`,
# ~6.5 min cold) as a host process behind the APIService v1beta1.metrics.k8s.io: the Resource
# Metrics API that `kubectl top` and a CPU HorizontalPodAutoscaler read. Off by default: the
# cold build is the only real cost; scripts/e2e.sh turns it on for e2e/tests/autoscaling.rs.
# Ports: etcd 23790/23800, apiserver 16443, controller-manager 10357, scheduler 10359,
# metrics-server 10352 (on the pod bridge's host address).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_runtime_packages() {
  local missing=() p
  for p in openssl curl; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" ||
    { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
}

healthy() {
  [[ -s "${STATE_DIR}/bins.env" ]] && pid_alive etcd && pid_alive kube-apiserver && pid_alive kube-controller-manager &&
    pid_alive kube-scheduler && [[ -s "$KUBECONFIG_PATH" ]] && [[ "$(api_get /readyz)" == ok ]]
}

gen_pki() {
  [[ -s "${PKI_DIR}/admin.token" && -s "${PKI_DIR}/apiserver.crt" ]] && return 0
  log "generating certificates in ${PKI_DIR}"
  mkdir -p "$PKI_DIR"
  (
    cd "$PKI_DIR"
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=auren-local-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    cat >apiserver.ext <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,IP:10.244.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
EXT
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    local admin cm sched
    admin=$(openssl rand -hex 16)
    cm=$(openssl rand -hex 16)
    sched=$(openssl rand -hex 16)
    {
      echo "${admin},auren-admin,auren-admin,\"system:masters\""
      # --use-service-account-credentials=false: every controller acts as this
      # user, whose bootstrap role is too narrow for them all; local cluster only.
      echo "${cm},system:kube-controller-manager,system:kube-controller-manager,\"system:masters\""
      echo "${sched},system:kube-scheduler,system:kube-scheduler"
    } >tokens.csv
    echo "$cm" >controller-manager.token
    echo "$sched" >scheduler.token
    echo "$admin" >admin.token # written last: marks the PKI as complete
  )
}

# The API server's client certificate for kubelets (logs, exec, port-forward on the real node).
gen_kubelet_client_cert() {
  [[ -s "${PKI_DIR}/kubelet-client.crt" ]] && return 0
  (
    cd "$PKI_DIR"
    umask 077
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >kubelet-client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out kubelet-client.crt -days 3650 -extfile kubelet-client.ext 2>/dev/null
  )
}

# metrics-server's certificates, both from the cluster CA: a client one (its identity towards
# the API server and the kubelet, whose x509 authentication trusts that CA; its rights come
# from the RBAC in apply_metrics_server_objects) and its serving one, for the name the API
# server checks (the APIService's Service).
gen_metrics_server_certs() {
  [[ -s "${PKI_DIR}/metrics-server-serving.crt" ]] && return 0
  (
    cd "$PKI_DIR"
    umask 077
    openssl req -newkey rsa:2048 -nodes -keyout metrics-server-client.key \
      -out metrics-server-client.csr -subj "/CN=system:auren-metrics-server" 2>/dev/null
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
      >metrics-server-client.ext
    openssl x509 -req -in metrics-server-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out metrics-server-client.crt -days 3650 -extfile metrics-server-client.ext 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout metrics-server-serving.key \
      -out metrics-server-serving.csr -subj "/CN=metrics-server.kube-system.svc" 2>/dev/null
    cat >metrics-server-serving.ext <<EXT
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:metrics-server.kube-system.svc,IP:${NODE_GATEWAY}
EXT
    openssl x509 -req -in metrics-server-serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out metrics-server-serving.crt -days 3650 -extfile metrics-server-serving.ext 2>/dev/null
  )
}

# A kubeconfig with metrics-server's client certificate.
write_metrics_server_kubeconfig() {
  local kc="${STATE_DIR}/metrics-server.kubeconfig"
  cat >"$kc" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: auren-local
  cluster: {server: ${SERVER_URL}, certificate-authority: ${PKI_DIR}/ca.crt}
users:
- name: metrics-server
  user: {client-certificate: ${PKI_DIR}/metrics-server-client.crt, client-key: ${PKI_DIR}/metrics-server-client.key}
contexts:
- name: auren-local
  context: {cluster: auren-local, user: metrics-server}
current-context: auren-local
KCFG
  chmod 600 "$kc"
  echo "$kc"
}

# Its rights (upstream's: read pods and nodes and scrape nodes/metrics, delegate authentication
# and authorization, read the front-proxy CA), the aggregated reader role, and the APIService
# behind a selector-less Service whose EndpointSlice is the host process.
apply_metrics_server_objects() {
  "${K8S_BIN}/kubectl" --kubeconfig "$KUBECONFIG_PATH" apply -f - >/dev/null <<YAML
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:auren-metrics-server"}
rules:
- {apiGroups: [""], resources: [nodes/metrics], verbs: [get]}
- {apiGroups: [""], resources: [pods, nodes], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:auren-metrics-server"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auren-metrics-server"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:auren-metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "auren-metrics-server:system:auth-delegator"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:auren-metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: auren-metrics-server-auth-reader, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:auren-metrics-server"}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:aggregated-metrics-reader"
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
rules:
- {apiGroups: [metrics.k8s.io], resources: [pods, nodes], verbs: [get, list, watch]}
---
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: ${METRICS_SERVER_PORT}, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-host
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server}
addressType: IPv4
endpoints: [{addresses: ["${NODE_GATEWAY}"], conditions: {ready: true}}]
ports: [{name: https, port: ${METRICS_SERVER_PORT}, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  service: {name: metrics-server, namespace: kube-system, port: 443}
  group: metrics.k8s.io
  version: v1beta1
  caBundle: $(base64 -w0 <"${PKI_DIR}/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
YAML
}

# The node's metrics through the API server: the APIService answers and metrics-server has
# scraped the kubelet at least once.
node_metrics_served() {
  api_get /apis/metrics.k8s.io/v1beta1/nodes | grep -q "\"name\": *\"${REAL_NODE}\""
}

# metrics-server as a host process (AUREN_METRICS_SERVER=1), scraping the kubelet's
# /metrics/resource every 15 s (its minimum is 10 s) at the node's InternalIP and the port the
# node reports; the kubelet's serving certificate is self-signed, hence --kubelet-insecure-tls.
start_metrics_server() {
  [[ "${AUREN_METRICS_SERVER:-0}" == 1 ]] || return 0
  if ! pid_alive metrics-server; then
    local bin kc
    bin="$(bash "${E2E_DIR}/cluster/k8s/build.sh" metrics-server)"
    gen_metrics_server_certs
    kc="$(write_metrics_server_kubeconfig)"
    apply_metrics_server_objects
    start_component metrics-server "${bin}/metrics-server" \
      --kubeconfig "$kc" --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
      --bind-address "$NODE_GATEWAY" --secure-port "$METRICS_SERVER_PORT" \
      --tls-cert-file "${PKI_DIR}/metrics-server-serving.crt" \
      --tls-private-key-file "${PKI_DIR}/metrics-server-serving.key" \
      --kubelet-insecure-tls --kubelet-preferred-address-types InternalIP \
      --kubelet-use-node-status-port \
      --metric-resolution 15s
  fi
  wait_for metrics-server 90 node_metrics_served
  log "metrics-server serves metrics.k8s.io (logs in ${LOG_DIR}/metrics-server.log)"
}

start_etcd() {
  pid_alive etcd && return 0
  start_local_etcd "${ETCD_BIN}/etcd" auren-local
}

# The cluster's binaries, built or found in the cache, recorded in bins.env for every later
# script (lib.sh reads it).
select_binaries() {
  local bins
  bins="$(bash "${E2E_DIR}/cluster/k8s/build.sh" all && bash "${E2E_DIR}/cluster/k8s/build.sh" node)"
  grep -E '^[A-Z0-9_]+_BIN=/' <<<"$bins" >"${STATE_DIR}/bins.env.tmp"
  mv "${STATE_DIR}/bins.env.tmp" "${STATE_DIR}/bins.env"
  # shellcheck source=/dev/null
  source "${STATE_DIR}/bins.env"
}

# The API server advertises the pod bridge's host address (real-node.sh forwards it to
# 127.0.0.1), so pods reach it through the `kubernetes` Service; it reaches the kubelet with its
# client certificate. Admission: the defaults (ServiceAccount, PodSecurity, ...) plus
# NodeRestriction, minus TaintNodesByCondition (the node is Ready before it has a CNI).
node_flags() {
  echo "--advertise-address ${NODE_GATEWAY} --endpoint-reconciler-type lease"
  echo "--kubelet-client-certificate ${PKI_DIR}/kubelet-client.crt --kubelet-client-key ${PKI_DIR}/kubelet-client.key"
  echo "--kubelet-preferred-address-types InternalIP"
  echo "--disable-admission-plugins TaintNodesByCondition"
  echo "--enable-admission-plugins NodeRestriction"
}

start_apiserver() {
  pid_alive kube-apiserver && return 0
  # shellcheck disable=SC2046  # the flags are words
  start_component kube-apiserver "${K8S_BIN}/kube-apiserver" \
    $(apiserver_shared_flags) $(node_flags)
}

start_controller_manager() {
  pid_alive kube-controller-manager && return 0
  # No node IPAM (the bridge's host-local IPAM hands out pod addresses) and no node lifecycle
  # (one node, which must not be tainted away during a fault test).
  local controllers='*,-node-ipam-controller,-node-lifecycle-controller'
  local kc="${STATE_DIR}/controller-manager.kubeconfig"
  write_kubeconfig "$kc" system:kube-controller-manager "$(cat "${PKI_DIR}/controller-manager.token")"
  start_component kube-controller-manager "${K8S_BIN}/kube-controller-manager" \
    --kubeconfig "$kc" \
    --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "${CONTROLLER_MANAGER_PORT}" \
    --controllers "$controllers" \
    --flex-volume-plugin-dir "${STATE_DIR}/flexvolume" \
    --use-service-account-credentials=false \
    --service-account-private-key-file "${PKI_DIR}/sa.key" \
    --root-ca-file "${PKI_DIR}/ca.crt" \
    --cluster-signing-cert-file "${PKI_DIR}/ca.crt" --cluster-signing-key-file "${PKI_DIR}/ca.key" \
    --leader-elect=false \
    --profiling=false
}

start_scheduler() {
  pid_alive kube-scheduler && return 0
  local kc="${STATE_DIR}/scheduler.kubeconfig"
  write_kubeconfig "$kc" system:kube-scheduler "$(cat "${PKI_DIR}/scheduler.token")"
  start_component kube-scheduler "${K8S_BIN}/kube-scheduler" \
    --kubeconfig "$kc" \
    --authentication-kubeconfig "$kc" --authorization-kubeconfig "$kc" \
    --bind-address 127.0.0.1 --secure-port "${SCHEDULER_PORT}" \
    --leader-elect=false \
    --profiling=false
}


node_side_running() {
  pid_alive containerd && pid_alive kubelet && pid_alive kube-proxy
}

apiserver_ready() { [[ "$(api_get /readyz)" == ok ]]; }

component_healthy() {
  [[ "$(curl -sfk --max-time 2 "https://127.0.0.1:$1/healthz")" == ok ]]
}

# The minor of the running cluster's Kubernetes, from its bin folder (k8s/v1.34.12-<key>/bin).
running_minor() {
  [[ "${K8S_BIN:-}" =~ /v([0-9]+\.[0-9]+)\.[0-9]+-[0-9a-f]+/bin$ ]] && echo "${BASH_REMATCH[1]}"
}

main() {
  local nodes=1
  [[ "${1:-}" == "--control-plane-only" ]] && nodes=0
  local want="${AUREN_K8S_MINOR:-1.37}" have
  have="$(running_minor || true)"
  if [[ -n "$have" && "$have" != "$want" ]] && pid_alive kube-apiserver; then
    log "a Kubernetes ${have} cluster is running (state ${STATE_DIR}); AUREN_K8S_MINOR asks for ${want}: run down.sh first"
    exit 1
  fi
  if healthy && { [[ $nodes == 0 ]] || node_side_running; }; then
    [[ $nodes == 0 ]] || start_metrics_server >&2
    export_line
    return 0
  fi
  if [[ $nodes == 1 ]]; then
    local reason
    reason="$(bash "${E2E_DIR}/cluster/real-node.sh" check)" ||
      { log "this machine cannot run the local cluster's node: ${reason}"; exit 1; }
  fi
  ensure_runtime_packages >&2
  select_binaries
  local images=""
  [[ $nodes == 1 ]] && images="${AUREN_IMAGES:-$(bash "${E2E_DIR}/../scripts/images.sh" | tail -n1)}"
  gen_pki
  gen_kubelet_client_cert
  gen_front_proxy_pki
  bash "${E2E_DIR}/cluster/real-node.sh" network >&2
  write_kubeconfig "$KUBECONFIG_PATH" auren-admin "$(admin_token)"
  start_etcd
  start_apiserver
  wait_for kube-apiserver 60 apiserver_ready
  start_controller_manager
  start_scheduler
  wait_for kube-controller-manager 30 component_healthy "$CONTROLLER_MANAGER_PORT"
  wait_for kube-scheduler 30 component_healthy "$SCHEDULER_PORT"
  log "control plane ready (logs in ${LOG_DIR})"
  if [[ $nodes == 1 ]]; then
    bash "${E2E_DIR}/cluster/real-node.sh" up "$images" >&2
    start_metrics_server >&2
  fi
  export_line
}

# The last line of stdout, for eval: the cluster's kubeconfig and its own kubectl first on PATH.
export_line() {
  echo "export KUBECONFIG=${KUBECONFIG_PATH} PATH=${K8S_BIN}:\$PATH"
}

main "$@"
