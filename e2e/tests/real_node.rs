//! The real node (issue 13): a kubelet, containerd and runc run the project's own images
//! (scripts/images.sh), Services go through kube-proxy's iptables rules, and the operator runs
//! as two pods from its image, installed by the Helm chart. Only the `real` e2e tier runs this
//! file (scripts/e2e.sh, AUREN_NODE=real): the broker and PostgreSQL listen on the pod bridge's
//! host address (AUREN_TEST_SERVICE_HOST) so that containers reach them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use auren_operator::api::Phase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use support::{
    Env, Load, NAME, Operator, TestNs, accepted_ids, assert_none_failed, kubectl, pod_processes,
    wait_for,
};

const REAL_NODE: &str = "auren-real-1";
const POD_CIDR_PREFIX: &str = "10.244.0.";
const NONROOT: &str = "65532";

/// The chart rendered for `ns` (the operator minds only that namespace) and applied.
fn install_chart(ns: &str) {
    let helm = std::env::var("HELM").expect("HELM (scripts/helm.sh) is exported by scripts/e2e.sh");
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/auren-operator");
    let out = Command::new(helm)
        .args(["template", "auren-operator", chart, "--namespace", ns])
        .args([
            "--kube-version",
            "1.37.2",
            "--set",
            &format!("watchNamespace={ns}"),
        ])
        .args(["--set", &format!("fullnameOverride=auren-operator-{ns}")])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=auren-e2e",
            "-f",
            "-",
        ],
        Some(&rendered),
    );
}

/// What the kernel says about a container's main process, read from the host.
#[derive(Debug)]
struct Confinement {
    uid: String,
    no_new_privs: bool,
    effective_caps: String,
    seccomp_filtered: bool,
    root_read_only: bool,
    own_mount_namespace: bool,
}

fn confinement(pid: u32) -> Confinement {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().next().unwrap_or("").to_owned())
            .unwrap_or_default()
    };
    // mountinfo: "... mount-point options ..."; the container's root is mounted at "/".
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root_read_only = mountinfo.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(4) == Some(&"/") && f.get(5).is_some_and(|o| o.split(',').any(|x| x == "ro"))
    });
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/mnt")).ok();
    Confinement {
        uid: field("Uid:"),
        no_new_privs: field("NoNewPrivs:") == "1",
        effective_caps: field("CapEff:"),
        seccomp_filtered: field("Seccomp:") == "2",
        root_read_only,
        own_mount_namespace: ns(&pid.to_string()) != ns("self"),
    }
}

/// The operator pods of the chart: Ready, running from the image under runc with the chart's
/// securityContext enforced by the kernel; one of them holds the Lease.
async fn assert_operator_pods(ns: &TestNs) {
    let name = format!("auren-operator-{}", ns.name);
    wait_for("2 ready operator replicas", 180, || async {
        let d = ns.api::<Deployment>().get(&name).await.ok()?;
        (d.status?.ready_replicas? == 2).then_some(())
    })
    .await;
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("app.kubernetes.io/name=auren-operator"))
        .await
        .unwrap();
    let names: Vec<String> = pods
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let images: HashSet<String> = pods
        .items
        .iter()
        .flat_map(|pod| assert_runs_in_a_container(pod, "docker.io/auren/operator:"))
        .collect();
    assert_eq!(
        images.len(),
        1,
        "both replicas run one operator image: {images:?}"
    );
    let holder = wait_for("a leader", 60, || async {
        let lease = ns.api::<Lease>().get("auren-operator").await.ok()?;
        lease.spec?.holder_identity
    })
    .await;
    assert!(
        names.contains(&holder),
        "the Lease names an operator pod: {holder} not in {names:?}"
    );

    let processes = pod_processes(&ns.name);
    for pod in &names {
        let (pid, _) = processes
            .iter()
            .find(|(_, p)| p == pod)
            .unwrap_or_else(|| panic!("no process of {pod} on this host: {processes:?}"));
        assert_confined(*pid, &format!("operator pod {pod}"));
    }
}

/// The kernel enforces the restricted securityContext on the process `pid` of `what`.
fn assert_confined(pid: u32, what: &str) {
    let c = confinement(pid);
    eprintln!("{what}: pid {pid} {c:?}");
    assert_eq!(c.uid, NONROOT, "{what}: runAsUser enforced");
    assert!(
        c.no_new_privs,
        "{what}: allowPrivilegeEscalation: false enforced"
    );
    assert_eq!(
        c.effective_caps, "0000000000000000",
        "{what}: capabilities dropped"
    );
    assert!(
        c.seccomp_filtered,
        "{what}: RuntimeDefault seccomp profile loaded"
    );
    assert!(c.root_read_only, "{what}: readOnlyRootFilesystem enforced");
    assert!(
        c.own_mount_namespace,
        "{what}: a container, not a host process"
    );
}

/// A pod that containerd runs: a containerd container id, an image of `repository` (the CRI
/// names an image by its first tag: `:0.1.0` and `:v1` are one image), a pod IP on the bridge,
/// the real node. Returns the image ids (digests) of its containers.
fn assert_runs_in_a_container(pod: &Pod, repository: &str) -> Vec<String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.node_name.as_deref(),
        Some(REAL_NODE),
        "{name} on the real node"
    );
    let status = pod.status.as_ref().unwrap();
    let ip = status.pod_ip.clone().unwrap_or_default();
    assert!(
        ip.starts_with(POD_CIDR_PREFIX),
        "{name} has a bridge pod IP, got {ip:?}"
    );
    let containers = status.container_statuses.clone().unwrap_or_default();
    assert!(!containers.is_empty(), "{name} has container statuses");
    let mut ids = Vec::new();
    for c in containers {
        assert!(
            c.container_id
                .unwrap_or_default()
                .starts_with("containerd://"),
            "{name}"
        );
        assert!(
            c.image.starts_with(repository),
            "{name} runs {}, not {repository}*",
            c.image
        );
        assert!(
            c.image_id.starts_with("sha256:") || c.image_id.contains("@sha256:"),
            "{name}"
        );
        ids.push(c.image_id);
    }
    ids
}

/// Runtime pods of every release in the namespace run as containers of the runtime image.
async fn assert_runtime_pods(ns: &TestNs) {
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("auren.io/role"))
        .await
        .unwrap();
    let running: Vec<&Pod> = pods
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .filter(|p| {
            let statuses = p.status.as_ref().and_then(|s| s.container_statuses.clone());
            statuses.is_some_and(|c| c.iter().all(|c| c.started == Some(true)))
        })
        .collect();
    assert!(!running.is_empty(), "runtime pods are running");
    let mut images = HashSet::new();
    for pod in running {
        let image = pod.spec.as_ref().unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default();
        assert!(image.starts_with("auren/runtime:"), "{image}");
        images.extend(assert_runs_in_a_container(pod, "docker.io/auren/runtime:"));
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pid =
            support::container_pid(pod).unwrap_or_else(|| panic!("{name}: no pid in runc's state"));
        assert_confined(pid, &format!("runtime pod {name}"));
    }
    assert_eq!(
        images.len(),
        1,
        "every release runs the one runtime image built here: {images:?}"
    );
}

/// SIGKILL to the consumer container of `revision`: the kubelet restarts it (a new process,
/// restartCount 1), it becomes Ready again and stores what the API accepts.
async fn assert_kubelet_restarts_a_killed_container(env: &Env, revision: &str) {
    let pods = env.ns.api::<Pod>();
    let name = support::pods_of(&env.ns, revision, "consumer")
        .await
        .remove(0);
    let pod = pods.get(&name).await.unwrap();
    let pid = support::container_pid(&pod).expect("the consumer container's pid from runc's state");
    support::kill9(pid);
    let restarted = wait_for(
        &format!("{name} restarted by the kubelet and Ready"),
        90,
        || async {
            let pod = pods.get(&name).await.ok()?;
            let status = pod
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .clone();
            let new_pid = support::container_pid(&pod).filter(|&p| p != pid)?;
            (status.restart_count >= 1 && status.ready).then_some(new_pid)
        },
    )
    .await;
    eprintln!("consumer {name}: kill -9 {pid}; the kubelet restarted it as pid {restarted}");
    let client = support::http_client();
    let active = env.ns.cluster_addr(NAME).await;
    let mut ids = support::Accepted::default();
    for n in 0..20 {
        let answer = support::post_event(&client, &active, "u-after-restart", n).await;
        assert_eq!(answer.status, 202, "accepted after the restart");
        ids.extend(answer.accepted());
    }
    env.assert_stored_once(&ids).await;
}

/// v1 → v2 (good) → v3 (20 % injected errors) on the real node, under load through the active
/// Service's ClusterIP (kube-proxy): v2 promoted, v3 rolled back, no request through the active
/// Service failed, every accepted event stored exactly once. Then a killed container is
/// restarted by the kubelet.
#[tokio::test]
async fn blue_green_on_real_containers_promotes_good_and_rolls_back_bad() {
    let env = Env::start_with("real", async |ns: &TestNs| {
        install_chart(&ns.name);
        assert_operator_pods(ns).await;
        Operator::in_cluster()
    })
    .await;
    let v1 = env.install("auren/runtime:v1").await;
    assert_runtime_pods(&env.ns).await;
    assert_pod_security_enforced(&env.ns).await;
    let active_addr = env.ns.cluster_addr(NAME).await;
    // kube-proxy programs the ClusterIP once v1's pods are ready endpoints; the load judges the
    // rollouts, so it starts once the active Service answers.
    let client = support::http_client();
    support::wait_for("the active Service to answer", 60, || async {
        let answer = support::post_event(&client, &active_addr, "u-real-probe", 0).await;
        (answer.status == 202).then_some(())
    })
    .await;
    let active = Load::workers(active_addr, "u-real", 2, Duration::from_millis(40));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let v2 = env.release(env.spec("auren/runtime:v2", &[])).await;
    // Test traffic to the candidate through the preview Service, so analysis has data to judge.
    let preview_addr = env.ns.cluster_addr(&format!("{NAME}-preview")).await;
    let preview = Load::start(preview_addr.clone(), "u-preview");
    let st = env
        .ns
        .wait_status(NAME, "v2 promoted", 180, |s| {
            s.stable.as_ref().is_some_and(|r| r.hash == v2) || s.phase == Some(Phase::RolledBack)
        })
        .await;
    assert_eq!(
        st.phase,
        Some(Phase::Healthy),
        "v2 promoted: {:?}",
        st.message
    );
    assert!(
        st.measurements.iter().any(|m| m.revision == v2),
        "v2 was measured"
    );
    assert_runtime_pods(&env.ns).await;
    let _ = preview.finish().await;

    let mut bad = env.spec("auren/runtime:v3", &[("FAULT_ERROR_RATE", "0.2")]);
    bad["allowUnsafe"] = json!(["faults"]); // fault injection on purpose
    bad["analysis"]["failureLimit"] = json!(1);
    bad["analysis"]["consecutiveFailureLimit"] = json!(1);
    let v3 = env.release(bad).await;
    let preview = Load::start(preview_addr, "u-preview");
    let st = env
        .ns
        .wait_status(NAME, "v3 rolled back", 180, |s| {
            s.phase == Some(Phase::RolledBack) || s.stable.as_ref().is_some_and(|r| r.hash == v3)
        })
        .await;
    let _ = preview.finish().await;
    assert_eq!(
        st.phase,
        Some(Phase::RolledBack),
        "v3 rolled back: {:?}",
        st.message
    );
    assert_eq!(
        st.reason.as_deref(),
        Some("AnalysisFailed"),
        "{:?}",
        st.message
    );
    assert_eq!(st.rejected.map(|r| r.hash), Some(v3.clone()), "v3 rejected");
    assert_eq!(
        st.stable.map(|s| s.hash),
        Some(v2.clone()),
        "v2 stays stable"
    );
    active.carries_on(50).await;
    let answers = active.finish().await;

    assert_none_failed(&answers);
    let releases: HashSet<_> = answers.iter().filter_map(|a| a.release.clone()).collect();
    assert!(
        releases.contains(&v1) && releases.contains(&v2),
        "{releases:?}"
    );
    assert!(
        !releases.contains(&v3),
        "the active Service never served v3"
    );
    let ids = accepted_ids(&answers);
    assert!(ids.len() > 100, "load was accepted: {} events", ids.len());
    env.assert_stored_once(&ids).await;
    assert_kubelet_restarts_a_killed_container(&env, &v2).await;
    eprintln!(
        "real node: {} requests, all 202, stored once; v1 {v1} -> v2 {v2}, v3 {v3} rolled back",
        answers.len()
    );
}

/// Packets the OUTPUT guard (e2e/cluster/real-node.sh) has refused so far.
fn output_guard_refusals() -> u64 {
    let out = Command::new("iptables")
        .args(["-L", "AUREN-OUTPUT-GUARD", "-n", "-v", "-x"])
        .output()
        .expect("run iptables");
    assert!(
        out.status.success(),
        "no AUREN-OUTPUT-GUARD chain: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("REJECT"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Issue 27, point 3: a host connection to a ClusterIP that no Service holds (so kube-proxy has
/// no rule for it) is refused on this machine by the OUTPUT guard, at once; without the guard it
/// would follow the default route out of the machine and hang until its timeout.
#[tokio::test]
async fn an_unprogrammed_cluster_ip_is_refused_on_this_machine() {
    const UNUSED: &str = "10.96.255.254";
    let ips = kubectl(
        &[
            "get",
            "services",
            "-A",
            "-o",
            "jsonpath={.items[*].spec.clusterIP}",
        ],
        None,
    );
    assert!(
        !ips.split_whitespace().any(|ip| ip == UNUSED),
        "{UNUSED} is a Service's ClusterIP: {ips}"
    );
    let before = output_guard_refusals();
    let started = std::time::Instant::now();
    let addr = format!("{UNUSED}:80").parse().unwrap();
    let err = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .expect_err("a connection to an unprogrammed ClusterIP succeeded");
    let took = started.elapsed();
    assert_eq!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{err} after {took:?}: not refused by the guard"
    );
    assert!(took < Duration::from_secs(1), "refused only after {took:?}");
    assert!(
        output_guard_refusals() > before,
        "the OUTPUT guard's counters did not move"
    );
}

/// Issue 32, point 2: the namespace the operator's and the runtime's pods were just admitted to
/// enforces Pod Security "restricted" in the API server, which refuses a privileged pod there
/// (a server-side dry run: nothing is created, admission runs all the same).
async fn assert_pod_security_enforced(ns: &TestNs) {
    let labels = Api::<Namespace>::all(ns.client.clone())
        .get(&ns.name)
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(
        labels
            .get(support::POD_SECURITY_ENFORCE)
            .map(String::as_str),
        Some("restricted"),
        "{labels:?}"
    );
    let privileged: Pod = serde_json::from_value(json!({
        "metadata": {"name": "privileged"},
        "spec": {"containers": [{
            "name": "root",
            "image": "docker.io/auren/runtime:v1",
            "securityContext": {"privileged": true},
        }]},
    }))
    .unwrap();
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match ns.api::<Pod>().create(&params, &privileged).await {
        Err(kube::Error::Api(refusal)) => {
            assert_eq!(refusal.code, 403, "{refusal:?}");
            assert!(
                refusal
                    .message
                    .contains("violates PodSecurity \"restricted"),
                "refused for another reason: {}",
                refusal.message
            );
            eprintln!("privileged pod refused: {}", refusal.message);
        }
        other => panic!("a privileged pod was not refused in {}: {other:?}", ns.name),
    }
}

/// The status of condition `type_` of pod `name`.
async fn pod_condition(ns: &TestNs, name: &str, type_: &str) -> Option<String> {
    let pod = ns.api::<Pod>().get(name).await.ok()?;
    let conditions = pod.status?.conditions?;
    conditions
        .into_iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status)
}

/// The kubelet honours a readiness gate (the operator's promotion gates rest on it): a pod
/// whose containers are ready stays unready until the gate's condition is patched True, and
/// keeps both afterwards.
#[tokio::test]
async fn an_unsatisfied_readiness_gate_keeps_a_pod_unready_until_patched() {
    let ns = TestNs::new("real-gate").await;
    let gate = "auren.io/traffic-ready";
    let mut pod = support::pause_pod("g");
    pod["spec"]["readinessGates"] = json!([{"conditionType": gate}]);
    let pod: Pod = serde_json::from_value(pod).unwrap();
    ns.api::<Pod>()
        .create(&Default::default(), &pod)
        .await
        .unwrap();
    wait_for("ContainersReady", 60, || async {
        (pod_condition(&ns, "g", "ContainersReady").await.as_deref() == Some("True")).then_some(())
    })
    .await;
    support::never("Ready without the gate", 3, || async {
        let ready = pod_condition(&ns, "g", "Ready").await;
        (ready.as_deref() != Some("False")).then_some(ready)
    })
    .await;
    let patch = json!({"status": {"conditions": [{"type": gate, "status": "True"}]}});
    ns.api::<Pod>()
        .patch_status(
            "g",
            &Default::default(),
            &kube::api::Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    wait_for("Ready after the gate", 30, || async {
        (pod_condition(&ns, "g", "Ready").await.as_deref() == Some("True")).then_some(())
    })
    .await;
    support::never("the gate condition dropped, or Ready lost", 3, || async {
        let seen = (
            pod_condition(&ns, "g", gate).await,
            pod_condition(&ns, "g", "Ready").await,
        );
        (seen.0.as_deref() != Some("True") || seen.1.as_deref() != Some("True")).then_some(seen)
    })
    .await;
}
