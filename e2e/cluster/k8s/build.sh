#!/usr/bin/env bash
# Build Kubernetes v1.37.2 and etcd v3.7.4 from the Go module proxy, pinned by the wrapper
# modules beside this script (go.sum is the hash check), and cache the binaries.
#
# Usage: [AUREN_K8S_MINOR=1.34] build.sh [all|kubernetes|etcd|node]
#   AUREN_K8S_MINOR  1.37 (default) builds v1.37.2 from kubernetes/; 1.34 builds v1.34.12 from
#                    kubernetes-1.34/ (for `make test-compat`). etcd and the node side are the
#                    same for both.
#   all (default)  prints `K8S_BIN=<dir>` and `ETCD_BIN=<dir>` (for eval)
#   kubernetes     prints the Kubernetes bin dir
#   etcd           prints the etcd bin dir
#   node           containerd v2.4.2, runc v1.5.3, CNI plugins v1.10.0 and crictl v1.37.0;
#                  prints CONTAINERD_BIN=, RUNC_BIN=, CNI_BIN= and CRICTL_BIN= lines
#   prometheus     Prometheus 3 (module v0.316.0, i.e. 3.16.0) for the e2e tests; prints its
#                  bin dir
#   metrics-server metrics-server v0.8.1 for the e2e autoscaling test (up.sh runs it with
#                  AUREN_METRICS_SERVER=1); prints its bin dir
#
# Cache:  ${AUREN_CACHE:-$HOME/.cache/auren}/k8s/v1.37.2-<key>/bin and
#         ${AUREN_CACHE:-$HOME/.cache/auren}/k8s/etcd-v3.7.4-<key>/bin, each with a
#         manifest.sha256 written only after a successful build (a missing or mismatching
#         manifest means a rebuild). <key> hashes the wrapper's go.mod and go.sum, the build
#         flags and the Go version: any change to what builds the binaries gives a new folder.
# Go's module and build caches live under the same AUREN_CACHE (go/, go-build/) so CI and
# later runs reuse them. Every go command runs at `nice -n ${AUREN_GO_NICE:-19}`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${AUREN_CACHE:-$HOME/.cache/auren}"
NICE="${AUREN_GO_NICE:-19}"
GO_MIN_MINOR=26 # both wrappers declare `go 1.26.0`

K8S_MODULE=k8s.io/kubernetes
case "${AUREN_K8S_MINOR:-1.37}" in
  1.37) K8S_VERSION=v1.37.2 K8S_DIR="${HERE}/kubernetes" ;;
  1.34) K8S_VERSION=v1.34.12 K8S_DIR="${HERE}/kubernetes-1.34" ;;
  *)
    echo "[k8s/build.sh] AUREN_K8S_MINOR=${AUREN_K8S_MINOR}: only 1.37 (default) and 1.34 are built" >&2
    exit 1
    ;;
esac
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)
ETCD_VERSION=v3.7.4
ETCD_PACKAGES=(go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3) # etcd, etcdctl
# The node side (`build.sh node`), one wrapper module each under node/.
CONTAINERD_VERSION=v2.4.2
CONTAINERD_MODULE=github.com/containerd/containerd/v2
RUNC_VERSION=v1.5.3
CNI_VERSION=v1.10.0
CNI_MODULE=github.com/containernetworking/plugins
CNI_PLUGINS=(main/bridge main/loopback ipam/host-local meta/portmap)
CRICTL_VERSION=v1.37.0
# Prometheus 3 for the analysis's `prometheus` checks (`build.sh prometheus`): Kubernetes
# service discovery only, and no web UI assets (the API needs none; they need npm).
PROMETHEUS_VERSION=v0.316.0 # the module version of Prometheus 3.16.0
PROMETHEUS_RELEASE=3.16.0
PROMETHEUS_MODULE=github.com/prometheus/prometheus
PROMETHEUS_TAGS="remove_all_sd,enable_kubernetes_sd"
# metrics-server for the CPU autoscaling test (`build.sh metrics-server`): the Resource Metrics
# API the HPA controller reads. It prints the version client-go's version package carries.
METRICS_SERVER_VERSION=v0.8.1
METRICS_SERVER_MODULE=sigs.k8s.io/metrics-server
# runc links libseccomp through cgo.
RUNC_PACKAGES=(gcc pkg-config libseccomp-dev)

log() { echo "[k8s/build.sh] $*" >&2; }
die() {
  log "$*"
  exit 1
}

# The go command never fetches a toolchain, never stamps this repository's git state into a
# binary, and never edits go.mod/go.sum: a build that needs a module go.sum does not pin fails.
go_env() {
  export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0
  export GOPATH="${CACHE}/go" GOMODCACHE="${CACHE}/go/pkg/mod" GOCACHE="${CACHE}/go-build"
}

gorun() { nice -n "$NICE" go "$@"; }

require_go() {
  command -v go >/dev/null || die "go not found: Go >= 1.${GO_MIN_MINOR} is required"
  local v
  v=$(go env GOVERSION)
  [[ "$v" =~ ^go1\.([0-9]+) ]] || die "cannot read the Go version from '$v'"
  ((BASH_REMATCH[1] >= GO_MIN_MINOR)) || die "$v is too old: Go >= 1.${GO_MIN_MINOR} is required"
}

# cache_key MODULE_DIR RECIPE -> 12 hex digits naming what builds the binaries: the wrapper's
# go.mod as the go command reads it (comments do not count), its go.sum, the flags and Go.
cache_key() {
  { (cd "$1" && go mod edit -json) && cat "$1/go.sum" && printf '%s\n' "$2" "$(go env GOVERSION)"; } |
    sha256sum | cut -c1-12
}

# cache_valid BIN_DIR BINARY... -> 0 when every binary is listed and matches the manifest.
cache_valid() {
  local dir=$1 b
  shift
  [[ -s "${dir}/manifest.sha256" ]] || return 1
  for b in "$@"; do
    grep -q "  ${b}\$" "${dir}/manifest.sha256" || return 1
    [[ -x "${dir}/${b}" ]] || return 1
  done
  (cd "$dir" && sha256sum --check --quiet --status manifest.sha256)
}

# The release time the proxy records for a module version: a fixed build date, so two builds
# of the same pins give the same bytes.
module_time() {
  local info
  info=$(cd "$K8S_DIR" && gorun mod download -json "$1" | sed -n 's/^[[:space:]]*"Info": "\(.*\)",$/\1/p')
  [[ -s "$info" ]] || die "cannot download $1"
  sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info"
}

# The proxy serves no git commit for a module version (its .info holds only Version and
# Time), so unless KUBE_GIT_COMMIT names it, gitCommit carries the hex of the module's h1
# content hash, which identifies the source exactly (see README.md).
module_commit() {
  if [[ -n "${KUBE_GIT_COMMIT:-}" ]]; then
    echo "$KUBE_GIT_COMMIT"
    return
  fi
  local sum
  sum=$(awk -v m="$1" -v v="$2" '$1 == m && $2 == v { print $3 }' "${K8S_DIR}/go.sum")
  [[ "$sum" == h1:* ]] || die "no h1 sum for $1 $2 in ${K8S_DIR}/go.sum"
  base64 -d <<<"${sum#h1:}" | od -An -tx1 | tr -d ' \n'
}

# Both version packages carry the same variables; kubectl reads client-go's, the servers and
# the kubelet component-base's.
k8s_ldflags() {
  local date commit minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  date=$(module_time "${K8S_MODULE}@${K8S_VERSION}")
  [[ -n "$date" ]] || die "no release time for ${K8S_MODULE}@${K8S_VERSION}"
  commit=$(module_commit "$K8S_MODULE" "$K8S_VERSION")
  local flags="-s -w" pkg kv
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    for kv in "gitVersion=${K8S_VERSION}" gitMajor=1 "gitMinor=${minor}" \
      "gitCommit=${commit}" gitTreeState=clean "buildDate=${date}"; do
      flags+=" -X ${pkg}.${kv}"
    done
  done
  echo "$flags"
}

# build_set PREFIX VERSION MODULE_DIR LDFLAGS TAGS CGO PACKAGE... ; the binaries are named
# after the last element of each package path (see binary_name). TAGS and CGO (0 or 1) enter
# the recipe only when set, so the sets built without them keep their keys.
build_set() {
  local prefix=$1 version=$2 moddir=$3 ldflags=$4 tags=$5 cgo=$6
  shift 6
  local recipe="trimpath|${ldflags}|$*"
  [[ -z "$tags" && "$cgo" == 0 ]] || recipe+="|tags=${tags}|cgo=${cgo}"
  local key
  key=$(cache_key "$moddir" "$recipe")
  local root="${CACHE}/k8s/${prefix}${version}-${key}"
  local bin="${root}/bin" binaries=() p
  for p in "$@"; do binaries+=("$(binary_name "$p")"); done
  mkdir -p "$root"
  exec 9>"${root}/.build.lock"
  flock 9
  if cache_valid "$bin" "${binaries[@]}"; then
    log "cached ${prefix}${version} binaries valid in ${bin}"
  else
    log "building ${prefix}${version}: ${binaries[*]} into ${bin}"
    local tmp="${root}/bin.new" start=$SECONDS
    rm -rf "$tmp"
    mkdir -p "$tmp"
    for p in "$@"; do
      (cd "$moddir" && CGO_ENABLED=$cgo gorun build -trimpath -tags "$tags" -ldflags "$ldflags" \
        -o "${tmp}/$(binary_name "$p")" "$p")
    done
    (cd "$tmp" && sha256sum "${binaries[@]}" >manifest.sha256)
    rm -rf "$bin"
    mv "$tmp" "$bin"
    log "built ${prefix}${version} in $((SECONDS - start)) s"
  fi
  exec 9>&-
  BUILT_BIN="$bin"
}

binary_name() {
  case "$1" in
    go.etcd.io/etcd/server/v3) echo etcd ;;
    go.etcd.io/etcd/etcdctl/v3) echo etcdctl ;;
    github.com/opencontainers/runc) echo runc ;;
    *) basename "$1" ;;
  esac
}

build_kubernetes() {
  local pkgs=() b
  for b in "${K8S_BINARIES[@]}"; do pkgs+=("${K8S_MODULE}/cmd/${b}"); done
  local ldflags
  ldflags=$(k8s_ldflags)
  build_set "" "$K8S_VERSION" "$K8S_DIR" "$ldflags" "" 0 "${pkgs[@]}"
  K8S_BIN=$BUILT_BIN
}

build_etcd() {
  build_set etcd- "$ETCD_VERSION" "${HERE}/etcd" "-s -w" "" 0 "${ETCD_PACKAGES[@]}"
  ETCD_BIN=$BUILT_BIN
}

ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing build packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
}

# containerd's Makefile sets Version, Revision and Package and the tag urfave_cli_no_docs; its
# shim there also gets no_grpc (a smaller binary), left out here so one tag list serves all.
# Revision stays empty: the proxy names no git commit.
build_containerd() {
  local v="${CONTAINERD_MODULE}/version"
  build_set containerd- "$CONTAINERD_VERSION" "${HERE}/node/containerd" \
    "-s -w -X ${v}.Version=${CONTAINERD_VERSION} -X ${v}.Package=${CONTAINERD_MODULE}" \
    urfave_cli_no_docs 0 \
    "${CONTAINERD_MODULE}/cmd/containerd" "${CONTAINERD_MODULE}/cmd/containerd-shim-runc-v2" \
    "${CONTAINERD_MODULE}/cmd/ctr"
  CONTAINERD_BIN=$BUILT_BIN
}

# runc's Makefile default tags minus libpathrs (a Rust C library Debian 12 does not ship);
# its version comes from the VERSION file it embeds. Linked against Debian's libseccomp.
build_runc() {
  ensure_packages "${RUNC_PACKAGES[@]}"
  build_set runc- "$RUNC_VERSION" "${HERE}/node/runc" "-s -w" "seccomp urfave_cli_no_docs" 1 \
    github.com/opencontainers/runc
  RUNC_BIN=$BUILT_BIN
}

build_cni() {
  local pkgs=() p
  for p in "${CNI_PLUGINS[@]}"; do pkgs+=("${CNI_MODULE}/plugins/${p}"); done
  build_set cni-plugins- "$CNI_VERSION" "${HERE}/node/cni" \
    "-s -w -X ${CNI_MODULE}/pkg/utils/buildversion.BuildVersion=${CNI_VERSION}" "" 0 "${pkgs[@]}"
  CNI_BIN=$BUILT_BIN
}

# cri-tools' Makefile passes the version without its leading v.
build_crictl() {
  build_set crictl- "$CRICTL_VERSION" "${HERE}/node/cri-tools" \
    "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION#v}" "" 0 \
    sigs.k8s.io/cri-tools/cmd/crictl
  CRICTL_BIN=$BUILT_BIN
}

build_prometheus() {
  local v=github.com/prometheus/common/version
  build_set prometheus- "$PROMETHEUS_VERSION" "${HERE}/prometheus" \
    "-s -w -X ${v}.Version=${PROMETHEUS_RELEASE}" "$PROMETHEUS_TAGS" 0 \
    "${PROMETHEUS_MODULE}/cmd/prometheus"
  PROMETHEUS_BIN=$BUILT_BIN
}

build_metrics_server() {
  local v=k8s.io/client-go/pkg/version
  build_set metrics-server- "$METRICS_SERVER_VERSION" "${HERE}/metrics-server" \
    "-s -w -X ${v}.gitVersion=${METRICS_SERVER_VERSION} -X ${v}.gitTreeState=clean" "" 0 \
    "${METRICS_SERVER_MODULE}/cmd/metrics-server"
  METRICS_SERVER_BIN=$BUILT_BIN
}

main() {
  local what=${1:-all}
  require_go
  go_env
  case "$what" in
    kubernetes)
      build_kubernetes
      echo "$K8S_BIN"
      ;;
    etcd)
      build_etcd
      echo "$ETCD_BIN"
      ;;
    all)
      build_etcd
      build_kubernetes
      echo "K8S_BIN=${K8S_BIN}"
      echo "ETCD_BIN=${ETCD_BIN}"
      ;;
    node)
      build_cni
      build_crictl
      build_runc
      build_containerd
      echo "CONTAINERD_BIN=${CONTAINERD_BIN}"
      echo "RUNC_BIN=${RUNC_BIN}"
      echo "CNI_BIN=${CNI_BIN}"
      echo "CRICTL_BIN=${CRICTL_BIN}"
      ;;
    prometheus)
      build_prometheus
      echo "$PROMETHEUS_BIN"
      ;;
    metrics-server)
      build_metrics_server
      echo "$METRICS_SERVER_BIN"
      ;;
    *) die "usage: build.sh [all|kubernetes|etcd|node|prometheus|metrics-server]" ;;
  esac
}

main "$@"
