#!/usr/bin/env bash
# Operator at scale: N AurenRuntimes (default 500) on the local cluster, their pods placed on
# the node agent's process-less node (auren-scale-1), one operator process (release build).
# Prints the operator's RSS, reconcile and decision latency (p50/p99 from its histograms)
# and the reconcile rate once every resource has been reconciled and nothing changes.
#   bash scripts/bench-operator.sh [N]
source "$(dirname "$0")/lib.sh"
cd "$AUREN_ROOT"
N="${1:-500}"
NS="auren-scale-$$"
bash e2e/cluster/build.sh >/dev/null
cargo build --release --locked -q -p auren-operator --bins
cargo build --locked -q --bins -p e2e -p auren-runtime
eval "$(bash e2e/cluster/up.sh | tail -n1)"
kubectl apply --server-side -f crds/aurenruntime.yaml >/dev/null 2>&1
kubectl create namespace "$NS" >/dev/null 2>&1
OP_LOG="$(mktemp)"
RUST_LOG=warn METRICS_ADDR=127.0.0.1:18090 POD_NAMESPACE="$NS" POD_NAME=bench-operator \
  "$CARGO_TARGET_DIR/release/auren-operator" 2>"$OP_LOG" &
OP=$!
cleanup() {
  kill "$OP" 2>/dev/null || true
  # Wait for the deletion: 1,000 leftover Services would exhaust the local Service proxy's
  # 254 addresses for whoever uses the cluster next.
  kubectl delete namespace "$NS" --timeout=600s >/dev/null 2>&1 || true
  rm -f "$OP_LOG" "$OP_LOG.before" "$OP_LOG.after"
}
trap cleanup EXIT

say "creating $N AurenRuntimes in $NS (pods on the process-less node auren-scale-1)"
python3 - "$N" <<'PY' | kubectl apply --server-side -n "$NS" -f - >/dev/null
import sys
for i in range(int(sys.argv[1])):
    print(f"""---
apiVersion: auren.io/v1alpha1
kind: AurenRuntime
metadata: {{name: ar-{i:04d}}}
spec:
  image: auren/runtime:v1
  api: {{replicas: 1}}
  consumer: {{replicas: 1}}
  placement:
    nodeSelector: {{kubernetes.io/hostname: auren-scale-1}}
    tolerations: [{{key: auren.dev/fake-node, operator: Exists, effect: NoSchedule}}]""")
PY
started=$(date +%s)
healthy() { kubectl get ar -n "$NS" -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | grep -c '^Healthy$' || true; }
# The fake node's pods answer the runtime's HTTP API from inside the node agent, so every
# resource gets to Healthy like a real one; only then is the steady state measured.
until [ "$(healthy)" -ge "$N" ]; do
  [ $(( $(date +%s) - started )) -gt 900 ] && die "only $(healthy) of $N AurenRuntimes Healthy within 15 minutes"
  sleep 5
done
healthy_at=$(date +%s)
say "all $N Healthy after $(( $(date +%s) - started ))s; letting it settle 30s"
sleep 30
metrics() { curl -s http://127.0.0.1:18090/metrics; }
count() { metrics | awk '/^auren_operator_reconciles_total/ {s+=$2} END {print s+0}'; }
requests() { metrics | awk '/^auren_operator_kube_api_requests_total/ && !/verb="watch"/ {s+=$2} END {print s+0}'; }
before=$(count); requests_before=$(requests); metrics >"$OP_LOG.before"
sleep 60
after=$(count); requests_after=$(requests); metrics >"$OP_LOG.after"
reconciles=$((after - before)); calls=$((requests_after - requests_before))
quantile() { # metric q
  metrics | python3 -c "
import sys
name, q = sys.argv[1], float(sys.argv[2])
buckets = []
for line in sys.stdin:
    if line.startswith(name + '_bucket'):
        le = line.split('le=\"')[1].split('\"')[0]
        buckets.append((float('inf') if le == '+Inf' else float(le), float(line.rsplit(' ', 1)[1])))
total = buckets[-1][1] if buckets else 0
for le, c in buckets:
    if total and c >= q * total:
        print(f'<= {le * 1000:g} ms'); break
else:
    print('no data')
" "$1" "$2"
}
echo
echo "| what | value |"
echo "|---|---|"
echo "| AurenRuntimes | $N (pods: $(kubectl get pods -n "$NS" --no-headers 2>/dev/null | wc -l)) |"
echo "| time to all Healthy | $(( healthy_at - started ))s |"
echo "| operator RSS (now / peak) | $(awk '/VmRSS/ {print int($2/1024)}' /proc/$OP/status) MiB / $(awk '/VmHWM/ {print int($2/1024)}' /proc/$OP/status) MiB |"
echo "| reconcile p50 / p99 (incl. API calls) | $(quantile auren_operator_reconcile_duration_seconds 0.5) / $(quantile auren_operator_reconcile_duration_seconds 0.99) |"
echo "| decision p50 / p99 (pure, no API) | $(quantile auren_operator_decision_duration_seconds 0.5) / $(quantile auren_operator_decision_duration_seconds 0.99) |"
echo "| reconciles per minute at steady state | $reconciles |"
echo "| API requests per reconcile at steady state (watches excluded) | $(python3 -c "print(round($calls / max($reconciles, 1), 2))") ($calls requests) |"
echo "| API requests in that minute, by verb and resource | $(python3 - "$OP_LOG.before" "$OP_LOG.after" <<'PY'
import sys
def series(path):
    out = {}
    for line in open(path):
        if line.startswith("auren_operator_kube_api_requests_total{") and 'verb="watch"' not in line:
            key, value = line.rsplit(" ", 1)
            out[key.split("{", 1)[1].rstrip("}")] = float(value)
    return out
before, after = series(sys.argv[1]), series(sys.argv[2])
diff = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}
print(", ".join(f"{k.replace('verb=', '').replace(',resource=', ' ').replace(chr(34), '')}: {v:g}" for k, v in sorted(diff.items())) or "none")
PY
) |"
echo "| phases | $(kubectl get ar -n "$NS" -o jsonpath='{range .items[*]}{.status.phase}{"\n"}{end}' | sort | uniq -c | awk '{printf "%s %s, ", $2, $1}') |"
