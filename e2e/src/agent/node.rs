//! Node registration and heartbeats (node status conditions and a Lease in
//! `kube-node-lease`).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use crate::Result;

const MANAGER: &str = "auren-node-agent";

/// Node metadata applied at registration (pure).
pub fn node_object(name: &str, fake: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "auren.dev/fake-node": if fake { "true" } else { "false" },
            }
        },
        "spec": if fake { json!({"taints": [fake_node_taint()]}) } else { json!({}) }
    })
}

/// Fake nodes are tainted so that only pods tolerating it (or naming the node
/// in `spec.nodeName`) land there: `auren.dev/fake-node=true:NoSchedule`.
pub fn fake_node_taint() -> Value {
    json!({"key": "auren.dev/fake-node", "value": "true", "effect": "NoSchedule"})
}

/// Node status with a Ready condition heartbeating at `now` (pure).
pub fn node_status(host_ip: &str, name: &str, fake: bool, now: &str) -> Value {
    let pods = if fake { "5000" } else { "250" };
    let resources =
        json!({"cpu": "64", "memory": "256Gi", "pods": pods, "ephemeral-storage": "1Ti"});
    let condition = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason,
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": name}],
        "conditions": [
            condition("Ready", "True", "AurenAgentReady"),
            condition("MemoryPressure", "False", "AurenAgentReady"),
            condition("DiskPressure", "False", "AurenAgentReady"),
            condition("PIDPressure", "False", "AurenAgentReady"),
        ],
        "nodeInfo": {
            "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "auren-process://1",
            "kernelVersion": "", "kubeProxyVersion": "", "kubeletVersion": "v1.20.2",
            "machineID": "", "operatingSystem": "linux", "osImage": "auren local processes",
            "systemUUID": ""
        }
    }})
}

fn lease_object(name: &str, now: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}
    })
}

fn micro_now() -> String {
    Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Creates or updates the Node object and reports it Ready.
pub async fn register(client: &Client, host_ip: &str, name: &str, fake: bool) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let params = PatchParams::apply(MANAGER).force();
    let node = nodes
        .patch(name, &params, &Patch::Apply(node_object(name, fake)))
        .await?;
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    let kept = without_condition_taints(&taints);
    if kept.len() != taints.len() {
        let patch = json!({"spec": {"taints": kept}});
        nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    heartbeat(client, host_ip, name, fake).await
}

/// Taints the apiserver puts on new nodes (TaintNodesByCondition) and that the
/// disabled node-lifecycle controller would normally lift; removed here (pure).
pub fn without_condition_taints(taints: &[Taint]) -> Vec<Taint> {
    const CONDITION_TAINTS: [&str; 2] = [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ];
    taints
        .iter()
        .filter(|t| !CONDITION_TAINTS.contains(&t.key.as_str()))
        .cloned()
        .collect()
}

/// Refreshes the Ready condition and renews the node Lease.
pub async fn heartbeat(client: &Client, host_ip: &str, name: &str, fake: bool) -> Result<()> {
    let now = micro_now();
    let nodes: Api<Node> = Api::all(client.clone());
    let status = node_status(
        host_ip,
        name,
        fake,
        &Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    );
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let params = PatchParams::apply(MANAGER).force();
    leases
        .patch(name, &params, &Patch::Apply(lease_object(name, &now)))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_ready_with_host_address() {
        let s = node_status("127.0.0.1", "n1", false, "2024-01-01T00:00:00Z");
        assert_eq!(s["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(s["status"]["conditions"][0]["status"], "True");
        assert_eq!(s["status"]["addresses"][0]["address"], "127.0.0.1");
        assert_eq!(s["status"]["allocatable"]["pods"], "250");
        assert_eq!(
            node_status("127.0.0.1", "f", true, "x")["status"]["capacity"]["pods"],
            "5000"
        );
    }

    #[test]
    fn condition_taints_are_lifted_others_kept() {
        let taint = |k: &str| Taint {
            key: k.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let kept =
            without_condition_taints(&[taint("node.kubernetes.io/not-ready"), taint("dedicated")]);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].key, "dedicated");
    }

    #[test]
    fn fake_nodes_are_labelled() {
        let fake = node_object("f", true);
        assert_eq!(fake["metadata"]["labels"]["auren.dev/fake-node"], "true");
        assert_eq!(fake["spec"]["taints"][0]["effect"], "NoSchedule");
        assert!(node_object("r", false)["spec"].get("taints").is_none());
    }
}
