#!/usr/bin/env bash
# The e2e tier: builds (or reuses) the local Kubernetes and the project's images, brings the
# cluster up, checks the chart against its API server, runs the e2e crate's tests against it,
# and stops it.
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"
bash scripts/deps.sh e2e
# The local cluster runs every pod in a real container: a machine that cannot (no root, no
# namespaces, no bridge) fails here at once with the reason. This tier is never skipped.
reason="$(bash e2e/cluster/real-node.sh check)" || die "this machine cannot run the local cluster's node: $reason"
cargo build --locked --bins -p auren-runtime -p auren-operator
AUREN_IMAGES="$(bash scripts/images.sh | tail -n1)"
export AUREN_IMAGES
python3 scripts/images.py check "$AUREN_IMAGES" >/dev/null
trap 'bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
say "e2e: Kubernetes 1.37.2 with a real node (kubelet, kube-proxy, containerd, runc) and the project's images"
eval "$(bash e2e/cluster/up.sh | tail -n1)"
kubectl version
kubectl get nodes -o wide
HELM="$(bash scripts/helm.sh)"

# The chart against a real API server (issue 7): every rendered object, the CRD included, must be
# accepted by `kubectl apply --server-side --dry-run=server` on the local Kubernetes 1.37.2. Nothing is
# persisted.
for variant in defaults options; do
  args=()
  [ "$variant" = options ] && args=(--set replicaCount=3 --set podDisruptionBudget.maxUnavailable=1
    --set 'extraEnv[0].name=EXTRA' --set-string 'extraEnv[0].value=1' --set serviceAccount.annotations.a=b)
  say "e2e: helm template ($variant) | kubectl apply --dry-run=server (Kubernetes 1.37.2)"
  rendered="$("$HELM" template auren-operator charts/auren-operator --namespace default --include-crds \
    --kube-version 1.37.2 "${args[@]}")"
  grep -q '^apiVersion: policy/v1$' <<<"$rendered" || die "expected a policy/v1 PodDisruptionBudget"
  objects="$(grep -c '^kind: ' <<<"$rendered")"
  out="$(kubectl apply --server-side --force-conflicts --field-manager=auren-e2e-chart --dry-run=server -f - <<<"$rendered")" || die "the API server refused the chart ($variant)"
  accepted="$(grep -c '(server dry run)$' <<<"$out" || true)"
  [ "$accepted" = "$objects" ] || { echo "$out" >&2; die "$accepted of $objects objects accepted ($variant)"; }
done

# The chart for real: install the operator with it, both replicas become Ready through their
# probes, one takes the Lease; then uninstall. It minds only its own namespace, so it cannot
# touch the tests' resources.
say "e2e: install the operator with the chart, wait for 2 Ready replicas and a leader"
CHART_NS=auren-chart-e2e
rendered="$("$HELM" template auren-operator charts/auren-operator --namespace "$CHART_NS" \
  --kube-version 1.37.2 --set watchNamespace="$CHART_NS")"
kubectl create namespace "$CHART_NS" >/dev/null
kubectl apply --server-side --force-conflicts --field-manager=auren-e2e-chart -f crds/aurenruntime.yaml >/dev/null
kubectl apply --server-side --field-manager=auren-e2e-chart -f - <<<"$rendered" >/dev/null
kubectl -n "$CHART_NS" wait --for=condition=Available --timeout=120s deployment/auren-operator \
  || { kubectl -n "$CHART_NS" get pods -o wide; die "the chart's operator did not become Available"; }
ready="$(kubectl -n "$CHART_NS" get deployment auren-operator -o jsonpath='{.status.readyReplicas}')"
[ "$ready" = 2 ] || die "expected 2 ready operator replicas, got ${ready:-0}"
for _ in $(seq 60); do
  leader="$(kubectl -n "$CHART_NS" get lease auren-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
  [ -n "$leader" ] && break
  sleep 0.5
done
[ -n "$leader" ] || die "no operator replica took the Lease"
say "e2e: chart install ok (leader $leader); uninstalling"
grep -v '^#' <<<"$rendered" | kubectl delete --ignore-not-found -f - >/dev/null
kubectl delete namespace "$CHART_NS" --wait=false >/dev/null

# Every scenario: the broker and PostgreSQL of each test listen on the pod bridge's host address
# (AUREN_TEST_SERVICE_HOST) so that containers reach them.
export HELM AUREN_TEST_SERVICE_HOST=10.244.0.1
cargo test --locked -p e2e --no-fail-fast -- --test-threads=1
