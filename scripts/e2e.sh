#!/usr/bin/env bash
# The e2e tier: builds (or reuses) the local Kubernetes and the project's images, brings the
# cluster up, checks the chart against its API server, runs the e2e crate's tests against it,
# and stops it. The steps are in e2e-lib.sh (shared with test-compat.sh).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/e2e-lib.sh"
cd "$AUREN_ROOT"
E2E_KUBE_VERSION=1.37.2
e2e_prepare
trap 'bash e2e/cluster/down.sh >/dev/null 2>&1 || true' EXIT
say "e2e: Kubernetes 1.37.2 with a real node (kubelet, kube-proxy, containerd, runc) and the project's images"
# With metrics-server (the Resource Metrics API) for the CPU HorizontalPodAutoscaler of
# e2e/tests/autoscaling.rs; a cold build of it adds ~2.5-6.5 min, cached like the control plane.
eval "$(AUREN_METRICS_SERVER=1 bash e2e/cluster/up.sh | tail -n1)"
kubectl version
kubectl get nodes -o wide
HELM="$(bash scripts/helm.sh)"
# A real Prometheus for the analysis's `prometheus` checks (e2e/tests/prometheus.rs).
AUREN_PROMETHEUS="$(bash e2e/cluster/k8s/build.sh prometheus)/prometheus"
export AUREN_PROMETHEUS
e2e_chart_dry_run
e2e_chart_install

# Every scenario: the broker and PostgreSQL of each test listen on the pod bridge's host address
# (AUREN_TEST_SERVICE_HOST) so that containers reach them.
export HELM AUREN_TEST_SERVICE_HOST=10.244.0.1
# The e2e files side by side (scripts/e2e_lanes.py): each lane's files one after another, the
# three lanes at the same time. Each test keeps its own namespace, broker, PostgreSQL and
# operator. faults runs alone after them: it freezes and kills brokers and PostgreSQL under
# cutovers, and beside three other lanes on two cores a consumer activated in such a cutover was
# several times never assigned a partition (see docs/reliability.md); alone it passes.
# control_plane_faults stops kube-apiserver, the kubelet and containerd, and crd_upgrade puts an
# older CRD in place for a moment, so each runs alone after the others.
python3 scripts/e2e_lanes.py \
  --stage canary,operator day2,real_node security,dashboard,gate_follow,helm,prometheus,autoscaling \
  --stage faults \
  --stage control_plane_faults \
  --stage crd_upgrade
