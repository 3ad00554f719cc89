#!/usr/bin/env bash
# Build kube-apiserver, kube-controller-manager and kube-scheduler v1.20.2 from
# Debian 12's `kubernetes` source package, offline, and cache the binaries.
#
# Cache:  ${AUREN_CACHE:-$HOME/.cache/auren}/k8s/v1.20.2/bin
#         (+ manifest.sha256, written only after a successful build; a missing or
#         mismatching manifest means the cache is rebuilt).
# The source/build tree is removed after success; only the binaries are kept.
set -euo pipefail

K8S_VERSION=v1.20.2
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
BUILD_PACKAGES=(golang-go rsync etcd-server golang-github-modern-go-reflect2-dev
  golang-github-json-iterator-go-dev openssl dpkg-dev)

CACHE_ROOT="${AUREN_CACHE:-$HOME/.cache/auren}/k8s/${K8S_VERSION}"
BIN_DIR="${CACHE_ROOT}/bin"
MANIFEST="${BIN_DIR}/manifest.sha256"
WORK_DIR="${CACHE_ROOT}/build"

log() { echo "[build.sh] $*" >&2; }

cache_valid() {
  [[ -s "$MANIFEST" ]] || return 1
  local b
  for b in "${BINARIES[@]}"; do
    grep -q "  ${b}\$" "$MANIFEST" || return 1
    [[ -x "${BIN_DIR}/${b}" ]] || return 1
  done
  (cd "$BIN_DIR" && sha256sum --check --quiet --status manifest.sha256)
}

ensure_packages() {
  local missing=() p
  for p in "${BUILD_PACKAGES[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing build packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
    apt-get update
    apt-get install -y --no-install-recommends "${missing[@]}"
  fi
}

# Private deb-src configuration: the system apt config is never modified.
fetch_source() {
  local apt_dir="${WORK_DIR}/apt"
  mkdir -p "${apt_dir}/sources.list.d" "${apt_dir}/lists/partial" "${apt_dir}/archives/partial"
  local src
  for src in /etc/apt/sources.list.d/*.sources; do
    [[ -e "$src" ]] || continue
    sed -e 's/^Types:.*/Types: deb-src/' "$src" >"${apt_dir}/sources.list.d/$(basename "$src")"
  done
  if [[ -f /etc/apt/sources.list ]]; then
    grep -E '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list |
      sed -E 's/^[[:space:]]*deb[[:space:]]/deb-src /' >"${apt_dir}/sources.list.d/extra.list" || true
  fi
  local opts=(-o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::Etc::SourceParts=${apt_dir}/sources.list.d"
    -o "Dir::State::Lists=${apt_dir}/lists"
    -o "Dir::Cache::Archives=${apt_dir}/archives"
    -o "APT::Sandbox::User=root")
  log "fetching kubernetes source package"
  apt-get "${opts[@]}" update
  (cd "$WORK_DIR" && apt-get "${opts[@]}" source --download-only kubernetes)
  local dsc
  dsc=$(find "${WORK_DIR}" -maxdepth 1 -name "kubernetes_*.dsc" | head -n1)
  rm -rf "${WORK_DIR}/src"
  dpkg-source --no-check -x "$dsc" "${WORK_DIR}/src"
}

# Go 1.19 + vendored reflect2 1.0.1 / json-iterator 1.1.10 crash the apiserver
# on the first custom-resource create: use Debian's newer copies instead.
replace_vendored() {
  local pair from to
  for pair in "github.com/modern-go/reflect2" "github.com/json-iterator/go"; do
    from="/usr/share/gocode/src/${pair}"
    to="${WORK_DIR}/src/vendor/${pair}"
    [[ -d "$from" ]] || { log "missing $from"; exit 1; }
    rm -rf "$to"
    mkdir -p "$to"
    find "$from" -maxdepth 1 -type f -name '*.go' ! -name '*_test.go' -exec cp {} "$to/" \;
    find "$from" -maxdepth 1 -type f \( -name '*.s' -o -name 'go.mod' \) -exec cp {} "$to/" \;
  done
}

compile() {
  local what=() b
  for b in "${BINARIES[@]}"; do what+=("cmd/${b}"); done
  log "compiling ${what[*]} (about 10 minutes cold)"
  (
    cd "${WORK_DIR}/src"
    export GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0 GO111MODULE=on
    export GOCACHE="${WORK_DIR}/gocache" GOPATH="${WORK_DIR}/gopath"
    export KUBE_GIT_VERSION="${K8S_VERSION}" KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean
    make WHAT="${what[*]}" GOLDFLAGS="-s -w"
  )
}

install_binaries() {
  local tmp="${CACHE_ROOT}/bin.new" b found
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for b in "${BINARIES[@]}"; do
    found=$(find "${WORK_DIR}/src/_output" -type f -name "$b" -perm -u+x | head -n1)
    [[ -n "$found" ]] || { log "binary $b not produced"; exit 1; }
    cp "$found" "${tmp}/${b}"
  done
  (cd "$tmp" && sha256sum "${BINARIES[@]}" >manifest.sha256)
  rm -rf "$BIN_DIR"
  mv "$tmp" "$BIN_DIR"
}

main() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"${CACHE_ROOT}/.build.lock"
  flock 9
  if cache_valid; then
    log "cached binaries valid in ${BIN_DIR}"
    return 0
  fi
  log "no valid cache in ${BIN_DIR}; building"
  rm -f "$MANIFEST"
  ensure_packages
  local start=$SECONDS
  rm -rf "$WORK_DIR"
  mkdir -p "$WORK_DIR"
  fetch_source
  replace_vendored
  compile
  install_binaries
  chmod -R u+w "$WORK_DIR" 2>/dev/null || true
  rm -rf "$WORK_DIR"
  log "built in $((SECONDS - start)) s into ${BIN_DIR}"
}

main "$@"
