#!/usr/bin/env bash
# The real node of the local cluster: kubelet and kube-proxy v1.37.2 (v1.34.12 when
# AUREN_K8S_MINOR=1.34, see up.sh), containerd v2.4.2, runc
# v1.5.3 and the CNI plugins v1.10.0, all built from pinned Go modules (k8s/build.sh; their bin
# folders come from bins.env, written by up.sh), and the project's own images
# (scripts/images.sh) imported into containerd. Debian 12's containerd (1.6) and runc (1.1) are
# not used: containerd 1.6 is out of support and kubelet 1.37 wants containerd >= 2.0.
#
#   real-node.sh check     can this machine run it? (prints the reason and exits 1 if not)
#   real-node.sh network   the pod bridge (auren0, 10.244.0.1/24) and the forwarding guard
#   real-node.sh up        containerd, image import, kubelet, kube-proxy; waits for Ready
#   real-node.sh down      stops them, removes every pod sandbox, mount, rule and the bridge
#
# Networking, all inside this machine: pods get 10.244.0.x on the bridge auren0 (the host is
# 10.244.0.1); ClusterIPs (10.96.0.0/16) are kube-proxy's iptables DNAT rules. A FORWARD guard
# drops anything from the bridge to any other interface, so no pod packet can leave the machine;
# an OUTPUT guard refuses, on this machine, any host packet for the Service or pod range that
# would leave by another interface than the bridge or loopback (a ClusterIP kube-proxy has not
# programmed yet, a pod address while the bridge is down).
# The API server stays bound to 127.0.0.1; pods reach it through the `kubernetes` Service, whose
# endpoint (the advertise address 10.244.0.1:16443) is a socat forwarder to 127.0.0.1:16443.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODE_DIR="${AUREN_NODE_DIR:-/var/lib/auren-node}"
RUN_DIR="/run/auren-node"
CONTAINERD_SOCK="${RUN_DIR}/containerd.sock"
KUBELET_DIR="${NODE_DIR}/kubelet"
CNI_CONF_DIR="${NODE_DIR}/cni/net.d"
NODE_PACKAGES=(iptables conntrack socat libseccomp2)
# containerd finds its shim, and the shim finds runc, on PATH.
export PATH="${CONTAINERD_BIN:-/nonexistent}:${RUNC_BIN:-/nonexistent}:${PATH}"

ensure_packages() {
  local missing=() p
  for p in "${NODE_PACKAGES[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
}

ctr_() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# kubelet 1.37 runs on cgroup v2, or on cgroup v1 with failCgroupV1: false (this machine);
# kubelet 1.34 has the same field (default false there).
cgroup_version() {
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then echo 2; else echo 1; fi
}

cgroups_usable() {
  if [[ $(cgroup_version) == 2 ]]; then
    local c
    for c in cpu memory pids; do
      grep -qw "$c" /sys/fs/cgroup/cgroup.controllers || { echo "cgroup v2 without the $c controller"; return 1; }
    done
  else
    [[ -d /sys/fs/cgroup/memory && -d /sys/fs/cgroup/cpu && -d /sys/fs/cgroup/pids ]] ||
      { echo "cgroup v1 memory/cpu/pids hierarchies not mounted under /sys/fs/cgroup"; return 1; }
  fi
}

# check: everything a kubelet with runc needs, tried for real (with the node's packages
# installed first: a fresh machine has no iptables). Prints why not, exits 1.
check() {
  [[ $(id -u) == 0 ]] || { echo "not root"; return 1; }
  ensure_packages >&2 || { echo "cannot install ${NODE_PACKAGES[*]}"; return 1; }
  cgroups_usable || return 1
  [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
    { echo "no br_netfilter (/proc/sys/net/bridge missing)"; return 1; }
  ip link add auren-chk0 type bridge 2>/dev/null && ip link del auren-chk0 ||
    { echo "cannot create a Linux bridge"; return 1; }
  unshare --mount --uts --ipc --net --pid --fork true 2>/dev/null ||
    { echo "cannot create namespaces (unshare --mount --uts --ipc --net --pid)"; return 1; }
  iptables -t nat -S >/dev/null 2>&1 || { echo "iptables nat table unusable"; return 1; }
  return 0
}

network() {
  sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr replace "${NODE_GATEWAY}/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # The guard: pod traffic stays on this machine (bridge <-> host only).
  iptables -N AUREN-GUARD 2>/dev/null || iptables -F AUREN-GUARD
  iptables -A AUREN-GUARD -i "$NODE_BRIDGE" -o "$NODE_BRIDGE" -j RETURN
  iptables -A AUREN-GUARD -i "$NODE_BRIDGE" -j DROP
  iptables -A AUREN-GUARD -o "$NODE_BRIDGE" -j DROP
  iptables -C FORWARD -j AUREN-GUARD 2>/dev/null || iptables -I FORWARD 1 -j AUREN-GUARD
  # The host's own packets. filter OUTPUT runs after kube-proxy's DNAT (nat OUTPUT), so a
  # programmed ClusterIP already reads as its endpoint there, and one that still reads as the
  # Service range has no rule yet: refused at once. Its `-o` is the route chosen before the
  # DNAT, so translated packets are let through on their conntrack state; the route after the
  # DNAT is guarded by the fallback route below. Untranslated pod-range packets leave only by
  # the bridge or loopback.
  iptables -N AUREN-OUTPUT-GUARD 2>/dev/null || iptables -F AUREN-OUTPUT-GUARD
  iptables -A AUREN-OUTPUT-GUARD -d "$SERVICE_CIDR" -p tcp -j REJECT --reject-with tcp-reset
  iptables -A AUREN-OUTPUT-GUARD -d "$SERVICE_CIDR" -j REJECT --reject-with icmp-net-unreachable
  iptables -A AUREN-OUTPUT-GUARD -m conntrack --ctstate DNAT -j RETURN
  iptables -A AUREN-OUTPUT-GUARD -o lo -j RETURN
  iptables -A AUREN-OUTPUT-GUARD -o "$NODE_BRIDGE" -j RETURN
  iptables -A AUREN-OUTPUT-GUARD -d "$POD_CIDR" -p tcp -j REJECT --reject-with tcp-reset
  iptables -A AUREN-OUTPUT-GUARD -d "$POD_CIDR" -j REJECT --reject-with icmp-net-unreachable
  # While the bridge (and so its connected route) is gone, pod addresses are unreachable here
  # instead of following the default route.
  ip route replace unreachable "$POD_CIDR" metric 4000
  iptables -C OUTPUT -j AUREN-OUTPUT-GUARD 2>/dev/null || iptables -I OUTPUT 1 -j AUREN-OUTPUT-GUARD
  # The API server's address for pods (the `kubernetes` Service endpoint).
  if ! pid_alive apiserver-forwarder; then
    # exec -a: the process is named after its component (pid_alive matches the name)
    start_component apiserver-forwarder bash -c 'exec -a apiserver-forwarder socat "$@"' socat \
      "TCP-LISTEN:${APISERVER_PORT},bind=${NODE_GATEWAY},fork,reuseaddr" "TCP:127.0.0.1:${APISERVER_PORT}"
  fi
}

write_configs() {
  mkdir -p "$NODE_DIR" "$RUN_DIR" "$CNI_CONF_DIR" "$KUBELET_DIR"
  cat >"${NODE_DIR}/containerd.toml" <<EOF
version = 3
root = "${NODE_DIR}/containerd"
state = "${RUN_DIR}/containerd"
[grpc]
  address = "${CONTAINERD_SOCK}"
[plugins.'io.containerd.cri.v1.images']
  # overlayfs cannot be mounted in this VM ("special device overlay does not exist")
  snapshotter = "native"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${PAUSE_IMAGE}"
[plugins.'io.containerd.cri.v1.runtime']
  # This VM withholds CAP_SYS_RESOURCE even from root: no process may lower its oom_score_adj,
  # so the kubelet's -998 (sandbox) and -997 (Guaranteed) are clamped to containerd's own (0).
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "${RUNC_BIN}/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["${CNI_BIN}"]
    conf_dir = "${CNI_CONF_DIR}"
# Image imports unpack into the native snapshotter too (the default, overlayfs, is unusable).
[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = "linux/amd64"
  snapshotter = "native"
EOF
  cat >"${CNI_CONF_DIR}/10-auren.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "auren",
  "plugins": [
    {"type": "bridge", "bridge": "${NODE_BRIDGE}", "isGateway": true, "ipMasq": false,
     "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "${POD_CIDR}", "rangeStart": "10.244.0.10",
              "gateway": "${NODE_GATEWAY}"}]], "routes": [{"dst": "0.0.0.0/0"}],
              "dataDir": "${NODE_DIR}/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  write_kubeconfig "${NODE_DIR}/kubelet.kubeconfig" auren-admin "$(admin_token)"
  write_kubelet_config
}

# The kubelet's settings (1.37 takes most of them only from its config file).
write_kubelet_config() {
  cat >"${NODE_DIR}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
runtimeRequestTimeout: 2m
address: ${NODE_GATEWAY}
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${KUBELET_HEALTHZ_PORT}
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: ${PKI_DIR}/ca.crt}
authorization: {mode: AlwaysAllow}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi}
clusterDomain: cluster.local
serializeImagePulls: false
nodeStatusUpdateFrequency: 5s
oomScoreAdj: 0
volumePluginDir: ${NODE_DIR}/volume-plugins
EOF
}

import_images() {
  local dir=$1 img
  for img in pause runtime operator; do
    ctr_ images import --snapshotter native "${dir}/${img}.tar" >/dev/null
  done
  # The scenarios and the demo release v1 -> v2 -> v3 of the same runtime image (a release is
  # the pod template's hash: the tag, config and env make it new).
  local tag
  for tag in v1 v2 v3; do
    ctr_ images tag --force "docker.io/auren/runtime:0.1.0" "docker.io/auren/runtime:${tag}" >/dev/null
  done
  log "images in containerd: $(ctr_ images ls -q | grep -v '^sha256:' | tr '\n' ' ')"
}

containerd_ready() { ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }
kubelet_healthy() { [[ "$(curl -sf --max-time 2 "http://127.0.0.1:${KUBELET_HEALTHZ_PORT}/healthz")" == ok ]]; }
node_ready() {
  kubectl --kubeconfig "$KUBECONFIG_PATH" get node "$REAL_NODE" \
    -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -qx True
}

up() {
  local images=${1:?images folder (scripts/images.sh)}
  ensure_packages
  check >/dev/null || { log "this machine cannot run a real node: $(check)"; exit 1; }
  network
  write_configs
  pid_alive containerd || start_component containerd "${CONTAINERD_BIN}/containerd" --config "${NODE_DIR}/containerd.toml"
  wait_for containerd 30 containerd_ready
  import_images "$images"
  pid_alive kubelet || start_component kubelet "${K8S_BIN}/kubelet" \
    --config "${NODE_DIR}/kubelet.yaml" \
    --kubeconfig "${NODE_DIR}/kubelet.kubeconfig" \
    --hostname-override "$REAL_NODE" --node-ip "$NODE_GATEWAY" \
    --node-labels auren.io/node-kind=containers \
    --root-dir "$KUBELET_DIR" --cert-dir "${NODE_DIR}/pki" \
    --v 1
  pid_alive kube-proxy || start_component kube-proxy "${K8S_BIN}/kube-proxy" \
    --kubeconfig "${NODE_DIR}/kubelet.kubeconfig" \
    --hostname-override "$REAL_NODE" \
    --proxy-mode iptables --cluster-cidr "$POD_CIDR" --masquerade-all \
    --bind-address 127.0.0.1 --nodeport-addresses "${NODE_GATEWAY}/32" \
    --healthz-bind-address "127.0.0.1:${KUBE_PROXY_HEALTHZ_PORT}" \
    --metrics-bind-address "127.0.0.1:${KUBE_PROXY_METRICS_PORT}" \
    --conntrack-max-per-core 0 --oom-score-adj 0 \
    --v 1
  wait_for kubelet 60 kubelet_healthy
  wait_for "node ${REAL_NODE} Ready" 90 node_ready
  log "real node ${REAL_NODE} Ready (kubelet $("${K8S_BIN}/kubelet" --version | awk '{print $2}'), cgroup v$(cgroup_version), containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}'))"
}

# Stop pods' containers first (kubelet gone, containerd still answers), then the daemons.
down() {
  stop_component kube-proxy
  stop_component kubelet
  if containerd_ready; then
    local s
    for s in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$s" >/dev/null 2>&1 || true; done
    sleep 0.5
    for s in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$s" >/dev/null 2>&1 || true; done
    for s in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$s" >/dev/null 2>&1 || true; done
  fi
  stop_component containerd
  pkill -f "containerd-shim-runc-v2 -namespace k8s.io -id .* -address ${CONTAINERD_SOCK}" 2>/dev/null || true
  stop_component apiserver-forwarder
  # pod network namespaces, volume tmpfs mounts, snapshot bind mounts
  local m
  for m in $(awk -v d="$NODE_DIR" -v r="$RUN_DIR" '$2 ~ "^(" d "|" r "|/run/netns/cni-)" {print $2}' /proc/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf /run/netns/cni-* 2>/dev/null || true
  iptables -D FORWARD -j AUREN-GUARD 2>/dev/null || true
  iptables -F AUREN-GUARD 2>/dev/null && iptables -X AUREN-GUARD 2>/dev/null || true
  iptables -D OUTPUT -j AUREN-OUTPUT-GUARD 2>/dev/null || true
  ip route del unreachable "$POD_CIDR" metric 4000 2>/dev/null || true
  iptables -F AUREN-OUTPUT-GUARD 2>/dev/null && iptables -X AUREN-OUTPUT-GUARD 2>/dev/null || true
  # kube-proxy's and the kubelet's chains (a rerun of kube-proxy recreates them)
  [[ -x "${K8S_BIN}/kube-proxy" ]] && "${K8S_BIN}/kube-proxy" --cleanup >/dev/null 2>&1 || true
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  rm -rf "$RUN_DIR" "$NODE_DIR"
  log "real node stopped"
}

case "${1:-}" in
  check) check ;;
  network) network ;;
  up) up "${2:-}" ;;
  down) down ;;
  *) echo "usage: $0 check|network|up IMAGES_DIR|down" >&2; exit 2 ;;
esac
