#!/usr/bin/env bash
# `make test-compat`: the oldest Kubernetes minor AUREN claims (1.34, issue 27) on a control
# plane and real node built the same way as 1.37.2's (e2e/cluster/k8s, AUREN_K8S_MINOR=1.34):
# the chart checked with --dry-run=server and installed, then a blue/green promotion and
# rollback on real containers (real_node.rs), the operator's promotion under load and rollback
# (operator.rs) and a canary (canary.rs). Starts from a clean cluster state and stops the
# cluster at the end (its logs are copied out first when something failed).
# Needs the cluster lock like any local cluster: `flock /work/cluster.lock make test-compat`.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/e2e-lib.sh"
cd "$AUREN_ROOT"

export AUREN_K8S_MINOR=1.34
# test file and test name (empty: the whole file)
TESTS=(
  "real_node|"
  "operator|good_release_is_promoted_under_load_without_loss"
  "operator|bad_release_is_rolled_back_and_active_clients_never_see_it"
  "canary|a_good_canary_completes_by_itself_and_serves_each_steps_weight"
)

started=$(date +%s)
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  local logs="${AUREN_CLUSTER_STATE:-e2e/.state}/logs"
  if [ "$code" != 0 ] && [ -d "$logs" ]; then
    local keep
    keep="$(mktemp -d "${TMPDIR:-/tmp}/auren-compat-logs.XXXXXX")"
    cp -r "$logs" "$keep/" 2>/dev/null || true
    say "test-compat failed; the cluster's logs are in $keep/logs"
  fi
  bash e2e/cluster/down.sh --purge >/dev/null 2>&1 || true
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bash scripts/broker.sh install # the tests' private brokers run Apache Kafka
e2e_prepare
say "test-compat: a clean local cluster on Kubernetes ${AUREN_K8S_MINOR} (e2e/cluster/k8s/kubernetes-${AUREN_K8S_MINOR})"
bash e2e/cluster/down.sh --purge >/dev/null
eval "$(bash e2e/cluster/up.sh | tail -n1)"
kubectl version
kubectl get nodes -o wide

# The server, the kubelet and kube-proxy must all be the 1.34 build.
server="$(kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
kubelet="$(kubectl get nodes -o jsonpath='{.items[*].status.nodeInfo.kubeletVersion}')"
[[ "$server" == "v${AUREN_K8S_MINOR}."* ]] || die "the API server is $server, not ${AUREN_K8S_MINOR}"
[[ "$kubelet" == "v${AUREN_K8S_MINOR}."* && "$kubelet" != *" "* ]] || die "the node's kubelet is '$kubelet', not ${AUREN_K8S_MINOR}"
E2E_KUBE_VERSION="${server#v}"

HELM="$(bash scripts/helm.sh)"
e2e_chart_dry_run
e2e_chart_install

export HELM AUREN_TEST_SERVICE_HOST=10.244.0.1
results=() failed=0
for t in "${TESTS[@]}"; do
  file=${t%%|*} name=${t#*|}
  filter=()
  [ -n "$name" ] && filter=(--exact "$name")
  say "test-compat: ${file}.rs ${name:-(every test)}"
  t0=$(date +%s)
  out="$(mktemp)"
  # a pass must have run something (a renamed test would otherwise select nothing and pass)
  if cargo test --locked -p e2e --test "$file" -- --test-threads=1 "${filter[@]}" 2>&1 | tee "$out" &&
    grep -q '^running [1-9]' "$out"; then
    results+=("pass  ${file}.rs ${name:-(every test)} ($(($(date +%s) - t0)) s)")
  else
    results+=("FAIL  ${file}.rs ${name:-(every test)} ($(($(date +%s) - t0)) s)")
    failed=1
  fi
  rm -f "$out"
done
say "test-compat on Kubernetes server ${server}, kubelet ${kubelet}:"
printf '  %s\n' "${results[@]}" >&2
say "test-compat took $(($(date +%s) - started)) s"
[ "$failed" = 0 ] || die "test-compat: a test failed"
