#!/usr/bin/env bash
# The e2e tier: builds (or reuses) the control plane, builds the binaries the pods and tests
# run, brings the local cluster up, runs the e2e crate's tests against it, and stops it.
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"
bash e2e/cluster/build.sh
cargo build --locked --bins -p auren-runtime -p auren-operator -p e2e
trap 'bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
eval "$(bash e2e/cluster/up.sh | tail -n1)"
kubectl get nodes 2>/dev/null

# The chart against a real API server (issue 7): every rendered object, the CRD included, must be
# accepted by `kubectl apply --server-side --dry-run=server` on the local Kubernetes 1.20 (PodDisruptionBudget:
# policy/v1beta1 there, picked by the chart from --kube-version). Nothing is persisted.
HELM="$(bash scripts/helm.sh)"
for variant in defaults options; do
  args=()
  [ "$variant" = options ] && args=(--set replicaCount=3 --set podDisruptionBudget.maxUnavailable=1
    --set 'extraEnv[0].name=EXTRA' --set-string 'extraEnv[0].value=1' --set serviceAccount.annotations.a=b)
  say "e2e: helm template ($variant) | kubectl apply --dry-run=server (Kubernetes 1.20.2)"
  rendered="$("$HELM" template auren-operator charts/auren-operator --namespace default --include-crds \
    --kube-version 1.20.2 "${args[@]}")"
  grep -q '^apiVersion: policy/v1beta1$' <<<"$rendered" || die "expected a policy/v1beta1 PodDisruptionBudget for 1.20"
  objects="$(grep -c '^kind: ' <<<"$rendered")"
  out="$(kubectl apply --server-side --force-conflicts --field-manager=auren-e2e-chart --dry-run=server -f - <<<"$rendered")" || die "the API server refused the chart ($variant)"
  accepted="$(grep -c '(server dry run)$' <<<"$out" || true)"
  [ "$accepted" = "$objects" ] || { echo "$out" >&2; die "$accepted of $objects objects accepted ($variant)"; }
done
cargo test --locked -p e2e --no-fail-fast -- --test-threads=1
