# Shared settings for the local control-plane scripts (sourced, not executed).
# shellcheck shell=bash disable=SC2034  # variables are used by the scripts sourcing this file
# Everything binds to 127.0.0.1 only.
E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="${AUREN_CLUSTER_STATE:-${E2E_DIR}/.state}"
STATE_DIR="$(mkdir -p "$STATE_DIR" && cd "$STATE_DIR" && pwd)"
CACHE_DIR="${AUREN_CACHE:-$HOME/.cache/auren}"
# The binaries of the running cluster (Kubernetes v1.37.2, etcd, containerd, runc, the CNI
# plugins, crictl), built from pinned Go modules by k8s/build.sh: up.sh records their folders in
# bins.env (K8S_BIN, ETCD_BIN, CONTAINERD_BIN, RUNC_BIN, CNI_BIN, CRICTL_BIN), so every later
# script drives the same binaries.
if [[ -s "${STATE_DIR}/bins.env" ]]; then
  # shellcheck source=/dev/null
  source "${STATE_DIR}/bins.env"
fi

# Loopback ports (chosen away from the usual 2379/2380/6443/10257/10259 defaults).
ETCD_CLIENT_PORT=23790
ETCD_PEER_PORT=23800
APISERVER_PORT=16443
CONTROLLER_MANAGER_PORT=10357
SCHEDULER_PORT=10359

# The real node (real-node.sh): kubelet + containerd + runc, pods on the bridge auren0.
REAL_NODE=auren-real-1
NODE_BRIDGE=auren0
POD_CIDR=10.244.0.0/24
NODE_GATEWAY=10.244.0.1
PAUSE_IMAGE=docker.io/auren/pause:3.2
KUBELET_PORT=10350
KUBELET_HEALTHZ_PORT=10348
KUBE_PROXY_HEALTHZ_PORT=10356
KUBE_PROXY_METRICS_PORT=10349
SERVICE_CIDR=10.96.0.0/16
# metrics-server (up.sh with AUREN_METRICS_SERVER=1) on the pod bridge's host address: the API
# server reaches it there through its APIService's EndpointSlice (loopback is refused there).
METRICS_SERVER_PORT=10352

PKI_DIR="${STATE_DIR}/pki"
LOG_DIR="${STATE_DIR}/logs"
PID_DIR="${STATE_DIR}/pids"
KUBECONFIG_PATH="${STATE_DIR}/kubeconfig"
SERVER_URL="https://127.0.0.1:${APISERVER_PORT}"

log() { echo "[$(basename "$0")] $*" >&2; }

# pid_alive NAME -> 0 when the process recorded in pids/NAME.pid runs and is
# still NAME (guards against a recycled pid).
pid_alive() {
  local f="${PID_DIR}/$1.pid" pid
  [[ -s "$f" ]] || return 1
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null | grep -q -- "$1"
}

# stop_component NAME: SIGTERM, wait up to 10 s, then SIGKILL; removes the pid file.
stop_component() {
  local name=$1 f="${PID_DIR}/$1.pid" pid i
  [[ -s "$f" ]] || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  if pid_alive "$name"; then
    log "stopping ${name} (pid ${pid})"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "${name} ignored SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
    fi
  fi
  rm -f "$f"
}

# start_component NAME CMD...: runs CMD detached, logs to logs/NAME.log, records the pid.
start_component() {
  local name=$1
  shift
  mkdir -p "$LOG_DIR" "$PID_DIR"
  # A daemon keeps none of its starter's descriptors beyond stdio (a lock held by flock(1)
  # or a CI runner's pipe would otherwise live as long as the daemon).
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      [[ $fd -gt 2 ]] && eval "exec ${fd}>&-"
    done
    exec setsid "$@" >>"${LOG_DIR}/${name}.log" 2>&1 </dev/null
  ) &
  echo $! >"${PID_DIR}/${name}.pid"
  log "started ${name} (pid $!)"
}

admin_token() { cat "${PKI_DIR}/admin.token"; }

api_get() {
  curl -sf --max-time 3 --cacert "${PKI_DIR}/ca.crt" \
    -H "Authorization: Bearer $(admin_token)" "${SERVER_URL}$1"
}

# write_kubeconfig PATH USER TOKEN
write_kubeconfig() {
  local ca
  ca=$(base64 -w0 <"${PKI_DIR}/ca.crt")
  cat >"$1.tmp" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: auren-local
  cluster:
    server: ${SERVER_URL}
    certificate-authority-data: ${ca}
users:
- name: $2
  user:
    token: $3
contexts:
- name: auren-local
  context:
    cluster: auren-local
    user: $2
    namespace: default
current-context: auren-local
KCFG
  chmod 600 "$1.tmp"
  mv "$1.tmp" "$1"
}

# wait_for WHAT SECONDS CMD...: polls CMD every 0.2 s.
wait_for() {
  local what=$1 secs=$2 i
  shift 2
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "${what} not ready after ${secs} s; see ${LOG_DIR}"
  return 1
}

# The kube-apiserver flags every local cluster shares (1.20's up.sh and the 1.37 smoke run):
# loopback etcd, TLS and static tokens, RBAC, service-account keys, the Service range. Read at
# call time, so a caller's own ports and folders apply.
apiserver_shared_flags() {
  printf '%s\n' \
    --etcd-servers "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --bind-address 127.0.0.1 \
    --secure-port "${APISERVER_PORT}" \
    --tls-cert-file "${PKI_DIR}/apiserver.crt" --tls-private-key-file "${PKI_DIR}/apiserver.key" \
    --client-ca-file "${PKI_DIR}/ca.crt" \
    --token-auth-file "${PKI_DIR}/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-account-key-file "${PKI_DIR}/sa.pub" \
    --service-account-signing-key-file "${PKI_DIR}/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --api-audiences https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range "${SERVICE_CIDR}" \
    --allow-privileged=true \
    --profiling=false
  aggregation_flags
}

# The aggregation layer, for extension API servers such as metrics-server: the API server
# proxies to them as front-proxy-client (a certificate of its own CA, front-proxy-ca, which
# gen_front_proxy_pki makes and the API server publishes in kube-system's
# extension-apiserver-authentication ConfigMap), and dials an APIService's endpoints
# directly, since no kube-proxy rules route its Service on the control plane's host.
aggregation_flags() {
  printf '%s\n' \
    --requestheader-client-ca-file "${PKI_DIR}/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "${PKI_DIR}/front-proxy-client.crt" \
    --proxy-client-key-file "${PKI_DIR}/front-proxy-client.key" \
    --enable-aggregator-routing=true
}

# The front-proxy CA and its client certificate (CN front-proxy-client) in PKI_DIR; kept when
# already there.
gen_front_proxy_pki() {
  [[ -s "${PKI_DIR}/front-proxy-client.crt" ]] && return 0
  mkdir -p "$PKI_DIR"
  (
    cd "$PKI_DIR" || exit 1
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -keyout front-proxy-ca.key -out front-proxy-ca.crt \
      -days 3650 -subj "/CN=auren-front-proxy-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout front-proxy-client.key \
      -out front-proxy-client.csr -subj "/CN=front-proxy-client" 2>/dev/null
    printf 'keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' \
      >front-proxy-client.ext
    openssl x509 -req -in front-proxy-client.csr -CA front-proxy-ca.crt -CAkey front-proxy-ca.key \
      -CAcreateserial -out front-proxy-client.crt -days 3650 -extfile front-proxy-client.ext 2>/dev/null
  )
}

# One etcd member on loopback for a local cluster (no fsync: test data only). $1 the etcd
# binary, $2 the member name.
start_local_etcd() {
  start_component etcd "$1" --name "$2" \
    --data-dir "${STATE_DIR}/etcd" \
    --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORT}" \
    --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORT}" \
    --initial-cluster "$2=http://127.0.0.1:${ETCD_PEER_PORT}" \
    --listen-metrics-urls "" \
    --unsafe-no-fsync
  wait_for etcd 20 curl -sf --max-time 2 "http://127.0.0.1:${ETCD_CLIENT_PORT}/health"
}
