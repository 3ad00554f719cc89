# shellcheck shell=bash
# The e2e tier's steps, shared by scripts/e2e.sh (`make test`, Kubernetes 1.37.2) and
# scripts/test-compat.sh (`make test-compat`, Kubernetes 1.34). Source it after lib.sh.
# E2E_KUBE_VERSION (e.g. 1.37.2) names the Kubernetes the chart is rendered for and checked on.

# Packages, the real-node check, the binaries the images hold, the images (AUREN_IMAGES).
e2e_prepare() {
  bash scripts/deps.sh e2e
  # The local cluster runs every pod in a real container: a machine that cannot (no root, no
  # namespaces, no bridge) fails here at once with the reason. This tier is never skipped.
  local reason
  reason="$(bash e2e/cluster/real-node.sh check)" || die "this machine cannot run the local cluster's node: $reason"
  cargo build --locked --bins -p auren-runtime -p auren-operator -p kubectl-auren
  AUREN_IMAGES="$(bash scripts/images.sh | tail -n1)"
  export AUREN_IMAGES
  python3 scripts/images.py check "$AUREN_IMAGES" >/dev/null
}

# The chart against a real API server (issue 7): every rendered object, the CRD included, must be
# accepted by `kubectl apply --server-side --dry-run=server`. Nothing is persisted.
e2e_chart_dry_run() {
  local variant args rendered objects out accepted
  for variant in defaults options; do
    args=()
    [ "$variant" = options ] && args=(--set replicaCount=3 --set podDisruptionBudget.maxUnavailable=1
      --set 'extraEnv[0].name=EXTRA' --set-string 'extraEnv[0].value=1' --set serviceAccount.annotations.a=b)
    say "e2e: helm template ($variant) | kubectl apply --dry-run=server (Kubernetes ${E2E_KUBE_VERSION})"
    rendered="$("$HELM" template auren-operator charts/auren-operator --namespace default --include-crds \
      --kube-version "$E2E_KUBE_VERSION" "${args[@]}")"
    grep -q '^apiVersion: policy/v1$' <<<"$rendered" || die "expected a policy/v1 PodDisruptionBudget"
    objects="$(grep -c '^kind: ' <<<"$rendered")"
    out="$(kubectl apply --server-side --force-conflicts --field-manager=auren-e2e-chart --dry-run=server -f - <<<"$rendered")" || die "the API server refused the chart ($variant)"
    accepted="$(grep -c '(server dry run)$' <<<"$out" || true)"
    [ "$accepted" = "$objects" ] || { echo "$out" >&2; die "$accepted of $objects objects accepted ($variant)"; }
  done
}

# The chart for real: install the operator with it, both replicas become Ready through their
# probes, one takes the Lease; then uninstall. It minds only its own namespace, so it cannot
# touch the tests' resources.
e2e_chart_install() {
  say "e2e: install the operator with the chart, wait for 2 Ready replicas and a leader"
  local ns=auren-chart-e2e rendered ready leader=""
  rendered="$("$HELM" template auren-operator charts/auren-operator --namespace "$ns" \
    --kube-version "$E2E_KUBE_VERSION" --set watchNamespace="$ns")"
  kubectl create namespace "$ns" >/dev/null
  kubectl label namespace "$ns" pod-security.kubernetes.io/enforce=restricted >/dev/null
  kubectl apply --server-side --force-conflicts --field-manager=auren-e2e-chart -f crds/aurenruntime.yaml >/dev/null
  kubectl apply --server-side --field-manager=auren-e2e-chart -f - <<<"$rendered" >/dev/null
  kubectl -n "$ns" wait --for=condition=Available --timeout=120s deployment/auren-operator ||
    { kubectl -n "$ns" get pods -o wide; die "the chart's operator did not become Available"; }
  ready="$(kubectl -n "$ns" get deployment auren-operator -o jsonpath='{.status.readyReplicas}')"
  [ "$ready" = 2 ] || die "expected 2 ready operator replicas, got ${ready:-0}"
  for _ in $(seq 60); do
    leader="$(kubectl -n "$ns" get lease auren-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
    [ -n "$leader" ] && break
    sleep 0.5
  done
  [ -n "$leader" ] || die "no operator replica took the Lease"
  say "e2e: chart install ok (leader $leader); uninstalling"
  grep -v '^#' <<<"$rendered" | kubectl delete --ignore-not-found -f - >/dev/null
  kubectl delete namespace "$ns" --wait=false >/dev/null
}
