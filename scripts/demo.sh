#!/usr/bin/env bash
# `make demo`: the whole product on the local Kubernetes cluster (e2e/), from a fresh clone.
#   1. builds the binaries, the images (from the Dockerfile, scripts/images.sh) and the local
#      Kubernetes 1.37.2 (cached), brings the cluster up with its real node (kubelet,
#      kube-proxy, containerd, runc), starts a private Kafka-protocol broker and PostgreSQL.
#      A machine that cannot run containers stops here with the reason (docs/operations.md: "The demo on
#      your own cluster");
#   2. installs the operator with its Helm chart (`helm template | kubectl apply --server-side`);
#   3. applies v1 (Secrets + an AurenRuntime) and waits for Healthy;
#   4. while signed webhooks flow through the ACTIVE Service: v1 -> v2 (measured, promoted), then
#      v2 -> v3 (20 % injected errors: analysis fails, rolled back automatically);
#   5. prints a summary: requests sent and failed through the active Service, events stored.
# Expected end state: v2 stable, v3 rolled back, zero failed requests through the active Service.
# Everything it started stops on exit; the cluster only if the demo brought it up. Env:
#   AUREN_DEMO_PG_PORT / AUREN_DEMO_KAFKA_PORT   loopback ports of its PostgreSQL and broker
#   AUREN_DEMO_KEEP=1                            leave the demo's objects in the cluster on exit
export AUREN_PG_PORT="${AUREN_DEMO_PG_PORT:-25442}"
export AUREN_KAFKA_PORT="${AUREN_DEMO_KAFKA_PORT:-29102}"
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"

NS=auren-demo              # where the AurenRuntime lives
OP_NS=auren-system         # where the chart installs the operator
RELEASE=auren-operator     # Helm release name (objects are named auren-operator)
AR=wearables
WEBHOOK_SECRET=demo-webhook-secret
CLUSTER_STATE="${AUREN_CLUSTER_STATE:-$AUREN_ROOT/e2e/.state}"
AUREN_STATE="$(mktemp -d "${TMPDIR:-/tmp}/auren-demo.XXXXXX")"
export AUREN_STATE
chmod 755 "$AUREN_STATE"
RENDERED="$AUREN_STATE/operator.yaml"
LOADS=()
CLUSTER_STARTED=0
started_at=$(date +%s)

step() { printf '\n\033[1;32m==> %s\033[0m\n' "$*" >&2; }

cleanup() {
  local code=$?
  trap - EXIT INT TERM
  for p in "${LOADS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KUBECONFIG:-}" ] && [ "${AUREN_DEMO_KEEP:-0}" != 1 ]; then
    say "removing the demo's objects (namespaces $NS and $OP_NS, the chart's cluster roles)"
    kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=90s >/dev/null 2>&1 || true
    [ -s "$RENDERED" ] && kubectl delete -f "$RENDERED" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
    kubectl delete namespace "$OP_NS" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  fi
  if [ "$CLUSTER_STARTED" = 1 ]; then
    say "stopping the local cluster (the demo started it)"
    bash e2e/cluster/down.sh >/dev/null 2>&1 || true
  fi
  bash scripts/broker.sh stop || true
  bash scripts/postgres.sh stop || true
  rm -rf "$AUREN_STATE"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 1. build, cluster, services ------------------------------------------------------------
step "1/5 build (cached after the first run), local cluster, broker, PostgreSQL"
bash scripts/deps.sh
bash scripts/broker.sh install
HELM="$(bash scripts/helm.sh)"
reason="$(bash e2e/cluster/real-node.sh check)" ||
  die "this machine cannot run the local cluster's node: $reason (docs/operations.md: \"The demo on your own cluster\")"
say "building auren-runtime, auren-operator (+ kubectl-auren)"
cargo build --locked -q --bins -p auren-runtime -p auren-operator -p kubectl-auren
export PATH="$CARGO_TARGET_DIR/debug:$PATH"   # `kubectl auren ...` finds the kubectl-auren plugin
say "building the images from the Dockerfile (scripts/images.sh: buildah, no Docker engine)"
AUREN_IMAGES="$(bash scripts/images.sh | tail -n1)"
export AUREN_IMAGES
IMAGE_SIZES="$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]+"/sizes.json")); print(", ".join("%s %.1f MiB" % (k, v["unpacked"]/2**20) for k, v in d.items()))' "$AUREN_IMAGES")"
# PostgreSQL and the broker listen where containers reach them: the pod bridge's host address.
export AUREN_SERVICE_HOST=10.244.0.1
source scripts/lib.sh

cluster_running() {
  local c pid
  for c in etcd kube-apiserver containerd kubelet kube-proxy; do
    pid="$(cat "$CLUSTER_STATE/pids/$c.pid" 2>/dev/null)" || return 1
    kill -0 "$pid" 2>/dev/null || return 1
  done
}
if cluster_running; then
  say "the local cluster already runs (shared): the demo leaves it up when it ends"
else
  CLUSTER_STARTED=1
fi
eval "$(bash e2e/cluster/up.sh | tail -n1)"
kubectl get nodes
if pgrep -f -- "$CARGO_TARGET_DIR/debug/deps/operator-" >/dev/null 2>&1; then
  say "warning: an e2e operator test runs on this cluster; its operator watches every namespace"
fi

bash scripts/postgres.sh start
bash scripts/broker.sh start
DATABASE_URL="$AUREN_TEST_DATABASE_URL"

# A previous run that was killed hard may have left its namespaces behind.
kubectl delete namespace "$NS" "$OP_NS" --ignore-not-found --wait=true --timeout=120s >/dev/null

# --- 2. the operator, from the Helm chart ---------------------------------------------------
step "2/5 install the operator with the Helm chart (charts/auren-operator)"
# CRDs first (Helm's crds/ folder): shared with the e2e tests, so never deleted by the demo.
kubectl apply --server-side --force-conflicts --field-manager=auren-demo -f charts/auren-operator/crds/ >/dev/null
kubectl wait --for condition=Established --timeout=60s crd/aurenruntimes.auren.io >/dev/null
kubectl create namespace "$OP_NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# Pod Security "restricted", enforced by the API server for both namespaces (issue 32).
kubectl label --overwrite namespace "$OP_NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
K8S_VERSION_SHOWN="$(kubectl version -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["serverVersion"]["gitVersion"])')"
"$HELM" template "$RELEASE" charts/auren-operator --namespace "$OP_NS" --kube-version "${K8S_VERSION_SHOWN#v}" \
  > "$RENDERED"
echo "\$ helm template $RELEASE charts/auren-operator --namespace $OP_NS --kube-version ${K8S_VERSION_SHOWN#v} | kubectl apply --server-side -f -"
kubectl apply --server-side --field-manager=auren-demo -f "$RENDERED"
for _ in $(seq 240); do
  ready="$(kubectl -n "$OP_NS" get deploy "$RELEASE" -o jsonpath='{.status.readyReplicas}')"
  [ "${ready:-0}" -ge 2 ] && break
  sleep 0.5
done
[ "${ready:-0}" -ge 2 ] || { kubectl -n "$OP_NS" get pods -o wide; die "the operator's 2 replicas did not become Ready"; }
kubectl -n "$OP_NS" get deploy,pods,svc,pdb -o wide
for _ in $(seq 60); do
  LEADER="$(kubectl -n "$OP_NS" get lease auren-operator -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)"
  [ -n "$LEADER" ] && break
  sleep 0.5
done
say "leader (Lease $OP_NS/auren-operator): ${LEADER:-none yet}; the other replica stands by"

# --- 3. v1 ----------------------------------------------------------------------------------
# The same shape as e2e/tests/operator.rs: one API pod and one consumer per release, fast
# health checks, a short analysis (3 s interval) so each rollout takes well under a minute.
runtime() { # IMAGE [EXTRA_CONFIG_YAML_LINE] [ALLOW_UNSAFE, e.g. faults]
  cat <<YAML
apiVersion: auren.io/v1alpha1
kind: AurenRuntime
metadata:
  name: $AR
  namespace: $NS
spec:
  image: $1
  config:
    HEALTH_CHECK_INTERVAL: "1"
    SHUTDOWN_TIMEOUT: "6"
    WEBHOOK_SECRET_OURA: $WEBHOOK_SECRET
${2:+    $2}
  api:
    replicas: 1
  connections:
    databaseUrl: {name: auren-database, key: url}
    kafkaBrokers: "$AUREN_TEST_KAFKA"
    adminToken: {name: auren-admin, key: token}
  strategy:
    blueGreen:
      scaleDownDelaySeconds: 15
  analysis:
    interval: 3s
    successfulMeasurementsToPromote: 4
    failureLimit: 2
    consecutiveFailureLimit: 2
  progressDeadlineSeconds: 90
${3:+  allowUnsafe: [$3]}
YAML
}
apply_runtime() {
  echo "\$ kubectl apply -f - <<< 'AurenRuntime $AR: image $1${2:+, config $2}${3:+, allowUnsafe [$3]}'"
  runtime "$@" | kubectl apply --server-side --field-manager=auren-demo -f -
}
field() { kubectl -n "$NS" get ar "$AR" -o jsonpath="{$1}" 2>/dev/null || true; }
get_ar() { echo "\$ kubectl -n $NS get ar"; kubectl -n "$NS" get ar; }
# Waits until `cond` (a shell expression over $phase, $stable, $candidate) holds; prints every
# phase/reason change on the way. Dies after $1 seconds.
watch_until() { # SECONDS WHAT COND
  local deadline=$(($(date +%s) + $1)) what=$2 cond=$3 last="" now
  while :; do
    phase="$(field .status.phase)" stable="$(field .status.stable.hash)" candidate="$(field .status.candidate.hash)"
    now="$phase $(field .status.reason)"
    if [ "$now" != "$last" ]; then
      printf '  %s  phase=%-12s reason=%-22s stable=%s candidate=%s\n' "$(date +%T)" "$phase" \
        "$(field .status.reason)" "${stable:--}" "${candidate:--}" >&2
      last="$now"
    fi
    eval "$cond" && return 0
    [ "$(date +%s)" -lt "$deadline" ] || { kubectl -n "$NS" describe ar "$AR" || true; die "timed out waiting for $what"; }
    sleep 0.5
  done
}

step "3/5 apply v1: the Secrets it references and an AurenRuntime"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label --overwrite namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
echo "\$ kubectl label namespace $NS pod-security.kubernetes.io/enforce=restricted"
kubectl -n "$NS" apply -f - <<YAML
apiVersion: v1
kind: Secret
metadata: {name: auren-database}
stringData: {url: "$DATABASE_URL"}
---
apiVersion: v1
kind: Secret
metadata: {name: auren-admin}
stringData: {token: "$(openssl rand -hex 24)"}
YAML
apply_runtime auren/runtime:v1
watch_until 180 "v1 Healthy" '[ "$phase" = Healthy ] && [ -n "$stable" ]'
V1="$stable"
get_ar

service_addr() { # SERVICE -> ClusterIP:port of its "http" port (kube-proxy's rules)
  kubectl -n "$NS" get svc "$1" -o jsonpath='{.spec.clusterIP}:{.spec.ports[0].port}'
}
ACTIVE="$(service_addr "$AR")"
PREVIEW="$(service_addr "$AR-preview")"
say "active Service $NS/$AR -> $ACTIVE, preview Service $NS/$AR-preview -> $PREVIEW (ClusterIPs, kube-proxy iptables)"

# --- 4. rollouts under load -----------------------------------------------------------------
step "4/5 load through the active Service, then v1 -> v2 (good) and v2 -> v3 (bad)"
python3 scripts/loadgen.py "http://$ACTIVE/webhooks/oura" "$WEBHOOK_SECRET" 0 2 --pause 0.05 \
  --user active --markers "$AUREN_STATE/active.markers" > "$AUREN_STATE/active.json" &
ACTIVE_LOAD=$!
LOADS+=("$ACTIVE_LOAD")
# The preview Service carries test traffic to the candidate, so analysis has data to judge.
python3 scripts/loadgen.py "http://$PREVIEW/webhooks/oura" "$WEBHOOK_SECRET" 0 1 --pause 0.1 \
  --user preview --markers "$AUREN_STATE/preview.markers" > "$AUREN_STATE/preview.json" &
LOADS+=("$!")
sleep 3

say "v1 -> v2: a new pod template = a new release (its revision hash); analysed, then promoted"
apply_runtime auren/runtime:v2
watch_until 60 "a v2 candidate" '[ -n "$candidate" ]'
V2="$candidate"
get_ar
watch_until 180 "v2 promoted" '[ "$stable" = "$V2" ] && [ "$phase" = Healthy ] || [ "$phase" = RolledBack ]'
[ "$phase" = Healthy ] || { kubectl -n "$NS" describe ar "$AR"; die "v2 was not promoted"; }
get_ar
echo "\$ kubectl -n $NS describe ar $AR"
kubectl -n "$NS" describe ar "$AR"

say "v2 -> v3 with FAULT_ERROR_RATE=0.2 (allowed on purpose: allowUnsafe [faults]): analysis fails, the operator rolls back by itself"
apply_runtime auren/runtime:v3 'FAULT_ERROR_RATE: "0.2"' faults
watch_until 60 "a v3 candidate" '[ -n "$candidate" ] && [ "$candidate" != "$V2" ]'
V3="$candidate"
get_ar
watch_until 180 "v3 rolled back" '[ "$phase" = RolledBack ] || { [ "$stable" = "$V3" ] && [ "$phase" = Healthy ]; }'
[ "$phase" = RolledBack ] || die "v3 was promoted: analysis did not catch the errors"
sleep 2
for p in "${LOADS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
wait "${LOADS[@]}" 2>/dev/null || true
LOADS=()
get_ar
echo "\$ kubectl -n $NS describe ar $AR"
kubectl -n "$NS" describe ar "$AR"
echo "\$ kubectl auren -n $NS history $AR"
kubectl auren -n "$NS" history "$AR" || true

# --- 5. summary -----------------------------------------------------------------------------
step "5/5 summary"
json() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
node_summary() {
  local runc_bin
  runc_bin="$(sed -n 's/^RUNC_BIN=//p' "$CLUSTER_STATE/bins.env")/runc"
  echo "Kubernetes $K8S_VERSION_SHOWN, kubelet + kube-proxy $(kubectl get nodes -o jsonpath='{.items[0].status.nodeInfo.kubeletVersion}'), $(kubectl get nodes -o jsonpath='{.items[0].status.nodeInfo.containerRuntimeVersion}'), runc $("$runc_bin" --version | awk 'NR==1{print $3}'); images built here: $IMAGE_SIZES"
}
A="$AUREN_STATE/active.json" P="$AUREN_STATE/preview.json"
SENT="$(json "$A" 'd["sent"]')" FAILED="$(json "$A" 'd["failed"]')"
ACCEPTED=$(( $(json "$A" 'd["accepted"]') + $(json "$P" 'd["accepted"]') ))
# Per request, not per id: the same request stored under two ids would look distinct.
STORED_ONCE="$(python3 scripts/stored-once.py "$DATABASE_URL" "$AUREN_STATE"/{active,preview}.markers)" \
  || die "not every accepted request was stored exactly once (above)"
STABLE_NOW="$(field .status.stable.hash)" REJECTED="$(field .status.rejected.hash)"
cat <<EOF

  node:            $(node_summary)
  releases:        v1=$V1  v2=$V2  v3=$V3
  final state:     phase=$(field .status.phase) ($(field .status.reason)), stable=$STABLE_NOW (v2), rejected=${REJECTED:-none} (v3)
  active Service:  $SENT requests sent, $FAILED failed; answers by release: $(json "$A" 'json.dumps(d["by_release"])')
  preview Service: $(json "$P" 'd["sent"]') test requests to the candidates, $(json "$P" 'd["failed"]') not accepted (v3's injected
                   500s, and refused connections while a candidate had no ready pod yet): $(json "$P" 'json.dumps(d["statuses"])')
  events stored:   $STORED_ONCE ($ACCEPTED accepted; counted per request by its marker, scripts/stored-once.py)
  took:            $(( $(date +%s) - started_at )) s

EOF
[ "$STABLE_NOW" = "$V2" ] && [ "$REJECTED" = "$V3" ] || die "expected v2 stable and v3 rejected"
[ "$FAILED" = 0 ] || die "$FAILED requests through the active Service failed: $(json "$A" 'd["failures"]')"
[ "$SENT" -gt 0 ] || die "no load was sent"
say "v2 is stable, v3 was rolled back, no request through the active Service failed."
cat <<EOF
Where to look next:
  README.md                 the front page; docs/user-guide.md (concepts, Argo CD), docs/operations.md (install on a real cluster)
  examples/                 minimal, blue/green with analysis, canary with steps, the Secrets
  kubectl auren --help      status --watch, promote, abort, retry, history (kubectl-auren: \$CARGO_TARGET_DIR/debug)
  make cluster-up           the local cluster for your own experiments (this demo cleans up after itself)
  e2e/tests/operator.rs     the same scenarios as assertions (make test); e2e/tests/real_node.rs on the real node
EOF
