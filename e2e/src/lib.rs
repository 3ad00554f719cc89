//! AUREN's end-to-end tests (`tests/`) run against the local Kubernetes that the scripts in
//! `e2e/cluster/` start: a v1.37.2 control plane and one real node (kubelet, kube-proxy,
//! containerd, runc), all built from pinned Go modules (`e2e/cluster/k8s/`). The tests drive it
//! through `KUBECONFIG`; this library has no code of its own.
