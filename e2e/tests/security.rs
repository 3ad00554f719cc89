//! The operator under exactly the chart's RBAC (issue 8). The chart is rendered by helm for a
//! test namespace with `watchNamespace` set to it: only namespaced RBAC comes out (a Role and
//! RoleBinding in the watched namespace, the leader-election Role), and nothing cluster-wide
//! (issue 26, point 5). Its ServiceAccount, Roles and bindings are applied, and the operator
//! runs with that ServiceAccount's token instead of the admin credential. `kubectl auth
//! can-i` asks the API server what that account may do with Secrets, here and elsewhere. It installs
//! a release (creating the admin-token Secret), promotes a second one (a canary), deletes the first once
//! the scale-down delay has passed, and reports a repeated Event. Then, from the operator's own
//! request counters:
//! - the API server refused nothing (the rules are enough), and
//! - every verb the chart grants was used (none can be dropped: the rules are the minimum).
//!
//! The same run checks that no secret leaks: the value of every Secret in the namespace (the
//! database URL, the generated admin token, the ServiceAccount token) appears in no status,
//! Event, operator log or runtime pod log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use auren_operator::api::Phase;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use support::{Env, NAME, Operator, TestNs, metric_value, wait_for};

const LEASE: &str = "auren-operator";
/// What the chart renders for a watchNamespace install: namespaced kinds only.
const RBAC_KINDS: [&str; 3] = ["ServiceAccount", "Role", "RoleBinding"];
const CLUSTER_KINDS: [&str; 2] = ["ClusterRole", "ClusterRoleBinding"];
/// Grants the operator uses only on a path this scenario does not take: `get` on
/// AurenRuntimes reads one afresh when the watch cache lags behind the operator's own status
/// write (`controller::fresh`, after an API server restart).
const CONDITIONAL: [(&str, &str); 1] = [("aurenruntimes", "get")];

/// The chart's RBAC objects, applied for one namespace (they go with the namespace).
struct ChartRbac {
    /// `(resource, verb)` pairs the chart grants (every Role together).
    granted: BTreeSet<(String, String)>,
    service_account: String,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `helm template` of the chart for `ns`, as JSON documents.
fn render_chart(ns: &str) -> Vec<Value> {
    let helm = Command::new("bash")
        .arg("scripts/helm.sh")
        .current_dir(workspace())
        .output()
        .expect("scripts/helm.sh");
    assert!(helm.status.success(), "scripts/helm.sh failed");
    let helm = String::from_utf8(helm.stdout).unwrap().trim().to_owned();
    let out = Command::new(helm)
        .args([
            "template",
            "rbac",
            "charts/auren-operator",
            "--namespace",
            ns,
        ])
        .args([
            "--kube-version",
            "1.37.2",
            "--set",
            &format!("watchNamespace={ns}"),
        ])
        .args(["--set", &format!("fullnameOverride={ns}-operator")])
        .args(["--set", &format!("leaderElection.leaseName={LEASE}")])
        .current_dir(workspace())
        .output()
        .expect("helm template");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| serde::Deserialize::deserialize(doc).ok())
        .filter(|v: &Value| v.is_object())
        .collect()
}

fn apply_chart_rbac(ns: &str) -> ChartRbac {
    let rendered = render_chart(ns);
    let kind_of = |d: &Value| d["kind"].as_str().unwrap_or("").to_owned();
    let cluster: Vec<String> = (rendered.iter().map(kind_of))
        .filter(|k| CLUSTER_KINDS.contains(&k.as_str()))
        .collect();
    assert!(
        cluster.is_empty(),
        "a watchNamespace install renders cluster-wide {cluster:?}"
    );
    let docs: Vec<Value> = rendered
        .into_iter()
        .filter(|d| RBAC_KINDS.contains(&d["kind"].as_str().unwrap_or("")))
        .collect();
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds.len(), RBAC_KINDS.len(), "the chart renders {kinds:?}");
    let mut granted = BTreeSet::new();
    for rule in docs
        .iter()
        .filter(|d| d["kind"] == "Role")
        .flat_map(|d| d["rules"].as_array().cloned().unwrap_or_default())
    {
        for resource in rule["resources"].as_array().unwrap() {
            for verb in rule["verbs"].as_array().unwrap() {
                let pair = (resource.as_str().unwrap(), verb.as_str().unwrap());
                granted.insert((pair.0.to_owned(), pair.1.to_owned()));
            }
        }
    }
    let name_of = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .and_then(|d| d["metadata"]["name"].as_str())
            .unwrap()
            .to_owned()
    };
    let rbac = ChartRbac {
        granted,
        service_account: name_of("ServiceAccount"),
    };
    let yaml: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
        .collect();
    let mut apply = Command::new("kubectl")
        .args(["apply", "-n", ns, "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl apply");
    use std::io::Write;
    apply
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(
        apply.wait().unwrap().success(),
        "kubectl apply of the chart's RBAC"
    );
    rbac
}

/// A kubeconfig for the local cluster that authenticates as the ServiceAccount, with a
/// token from the TokenRequest API (Kubernetes 1.24+ creates no token Secrets).
async fn service_account_kubeconfig(ns: &TestNs, account: &str) -> PathBuf {
    let token = support::kubectl(
        &[
            "-n",
            &ns.name,
            "create",
            "token",
            account,
            "--duration",
            "1h",
        ],
        None,
    );
    let token = token.trim().to_owned();
    assert!(!token.is_empty(), "an empty token for {account}");
    let admin = std::fs::read_to_string(support::state_dir().join("kubeconfig")).unwrap();
    let mut config: Value = serde_yaml::from_str(&admin).unwrap();
    config["users"] = json!([{"name": account, "user": {"token": token}}]);
    config["contexts"][0]["context"]["user"] = json!(account);
    let path = std::env::temp_dir().join(format!("{}-{account}.kubeconfig", ns.name));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// Requests the operator sent, as `(resource, verb)`, from its metrics.
fn requests_used(metrics: &str) -> BTreeSet<(String, String)> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("auren_operator_kube_api_requests_total{"))
        .filter_map(|l| {
            let (labels, count) = l.rsplit_once("} ")?;
            let label = |key: &str| {
                let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
                Some(labels[start..].split('"').next()?.to_owned())
            };
            (count.trim().parse::<f64>().ok()? > 0.0)
                .then_some((label("resource")?, label("verb")?))
        })
        .collect()
}

/// Grants that a request of another verb exercises: server-side apply is a PATCH, and the API
/// server also checks `create` when that PATCH creates the object (Deployments and Services
/// of a new release; the test creates both).
fn implied_by_apply(used: &BTreeSet<(String, String)>) -> BTreeSet<(String, String)> {
    used.iter()
        .filter(|(resource, verb)| {
            verb == "patch" && ["deployments", "services"].contains(&resource.as_str())
        })
        .map(|(resource, _)| (resource.clone(), "create".to_owned()))
        .collect()
}

/// `Some` once the operator's `ControlIgnored` Events (events.k8s.io/v1) count `times`
/// reports: a repeat patches the first one's series.
async fn control_ignored(env: &Env, times: i32) -> Option<()> {
    use k8s_openapi::api::events::v1::Event;
    let events = env
        .ns
        .api::<Event>()
        .list(&ListParams::default())
        .await
        .ok()?;
    let reports: i32 = (events.items.iter())
        .filter(|e| e.reason.as_deref() == Some("ControlIgnored"))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count))
        .sum();
    (reports >= times).then_some(())
}

#[tokio::test]
async fn under_the_charts_rbac_the_operator_needs_all_of_it_and_leaks_no_secret() {
    let mut rbac = None;
    let env = Env::start_with("rbac", async |ns: &TestNs| {
        let applied = apply_chart_rbac(&ns.name);
        let kubeconfig = service_account_kubeconfig(ns, &applied.service_account).await;
        rbac = Some(applied);
        Operator::start_as(
            &ns.name,
            LEASE,
            &format!("{}-sa", ns.name),
            Some(&kubeconfig),
        )
    })
    .await;
    let rbac = rbac.unwrap();

    // Install (generated admin token, Services, readiness gates, Events, the Lease) …
    let v1 = env.install("auren/runtime:v1").await;
    // … promote a second release, as a canary (its stable and candidate API pods labelled
    // for the canary's active Service) …
    let mut canary = env.spec("auren/runtime:v2", &[]);
    // (`blueGreen: null`: the spec is a merge patch, and a spec with both strategies is invalid.)
    canary["strategy"] = json!({"blueGreen": null,
        "canary": {"steps": [{"setWeight": 50}], "scaleDownDelaySeconds": 15}});
    env.set_spec(canary).await.unwrap();
    let st = env
        .ns
        .wait_status(NAME, "v2 promoted", 120, |s| {
            s.stable.as_ref().is_some_and(|r| r.image.ends_with(":v2"))
                || s.phase == Some(Phase::RolledBack)
        })
        .await;
    assert_eq!(st.phase, Some(Phase::Healthy), "{:?}", st.message);
    // … whose predecessor is deleted after the scale-down delay …
    let deployments = env.ns.api::<Deployment>();
    wait_for("v1's Deployments deleted", 60, || async {
        let list = deployments.list(&ListParams::default()).await.ok()?;
        (!list
            .items
            .iter()
            .any(|d| d.metadata.name.as_deref().unwrap_or("").contains(&v1)))
        .then_some(())
    })
    .await;
    // … and an Event reported twice (the Recorder patches the series): a control with no
    // rollout in flight is ignored, twice.
    for (value, times) in [("1", 1), ("2", 2)] {
        let patch = json!({"metadata": {"annotations": {"auren.io/abort": value}}});
        env.ns
            .runtimes()
            .patch(NAME, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        wait_for(
            &format!("ControlIgnored reported {times} times"),
            30,
            || control_ignored(&env, times),
        )
        .await;
    }

    let metrics = env.operator.metrics().await;
    let refused = metric_value(&metrics, "auren_operator_kube_api_refused_total");
    assert_eq!(
        refused,
        0.0,
        "requests refused; log:\n{}",
        env.operator.log_tail()
    );
    let used = requests_used(&metrics);
    let exercised: BTreeSet<_> = used.union(&implied_by_apply(&used)).cloned().collect();
    let outside: Vec<_> = used.difference(&rbac.granted).collect();
    assert!(
        outside.is_empty(),
        "used without a grant (yet not refused?): {outside:?}"
    );
    let unused: Vec<_> = (rbac.granted.difference(&exercised))
        .filter(|(r, v)| !CONDITIONAL.contains(&(r.as_str(), v.as_str())))
        .collect();
    assert!(
        unused.is_empty(),
        "the chart grants {unused:?}, which the operator never used: drop them\nused: {used:?}"
    );
    eprintln!("granted and used: {:?}", rbac.granted);

    assert_secret_rights_are_exactly_get_and_create_here(&env.ns.name, &rbac.service_account);
    assert_no_secret_leaks(&env).await;
}

/// What the API server says the operator's account may do with Secrets: get and create in the
/// watched namespace, nothing else there, and nothing at all in another namespace or across
/// all of them.
fn assert_secret_rights_are_exactly_get_and_create_here(ns: &str, account: &str) {
    let user = format!("system:serviceaccount:{ns}:{account}");
    let can = |verb: &str, scope: &[&str]| {
        let out = Command::new("kubectl")
            .args(["auth", "can-i", verb, "secrets", "--as", &user])
            .args(scope)
            .output()
            .expect("kubectl auth can-i");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            answer == "yes" || answer == "no",
            "kubectl auth can-i {verb} secrets {scope:?}: {answer:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        answer == "yes"
    };
    let here = ["-n", ns];
    let granted: Vec<&str> = [
        "get", "create", "list", "watch", "update", "patch", "delete",
    ]
    .into_iter()
    .filter(|verb| can(verb, &here))
    .collect();
    assert_eq!(granted, ["get", "create"], "Secret verbs in {ns}");
    for scope in [&["-n", "kube-system"][..], &["--all-namespaces"][..]] {
        for verb in ["get", "create"] {
            assert!(!can(verb, scope), "{verb} secrets {scope:?} is granted");
        }
    }
}

/// No Secret value of the namespace appears in the status, the Events, the operator's log or
/// the runtime pods' logs.
async fn assert_no_secret_leaks(env: &Env) {
    let secrets = env
        .ns
        .api::<Secret>()
        .list(&ListParams::default())
        .await
        .unwrap();
    let values: Vec<(String, String)> = secrets
        .items
        .iter()
        .flat_map(|s| {
            let name = s.metadata.name.clone().unwrap_or_default();
            // A ServiceAccount token Secret also holds the cluster CA and the namespace name,
            // which are not secret.
            let token_only = s.type_.as_deref() == Some("kubernetes.io/service-account-token");
            let data = s.data.iter().flatten();
            data.filter(move |(key, _)| !token_only || key.as_str() == "token")
                .map(move |(key, value)| {
                    (
                        format!("{name}/{key}"),
                        String::from_utf8_lossy(&value.0).into_owned(),
                    )
                })
        })
        .filter(|(_, value)| value.len() >= 8)
        .collect();
    let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.iter().any(|n| n.ends_with("-admin/token"))
            && names.iter().any(|n| n.starts_with("db/")),
        "expected the generated admin token and the database URL among {names:?}"
    );
    let status = serde_json::to_string(&env.ns.status(NAME).await).unwrap();
    let events = env
        .ns
        .api::<k8s_openapi::api::events::v1::Event>()
        .list(&ListParams::default())
        .await
        .unwrap();
    let events = serde_json::to_string(&events.items).unwrap();
    let operator_log = std::fs::read_to_string(&env.operator.log).unwrap();
    let mut places = vec![
        ("the status".to_owned(), status),
        ("the Events".to_owned(), events),
        ("the operator log".to_owned(), operator_log),
    ];
    // The kubelet's container logs: /var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log
    let logs = std::path::Path::new("/var/log/pods");
    for pod in std::fs::read_dir(logs).unwrap().flatten() {
        let pod_dir = pod.file_name().to_string_lossy().into_owned();
        if !pod_dir.starts_with(&format!("{}_", env.ns.name)) {
            continue;
        }
        for container in std::fs::read_dir(pod.path()).unwrap().flatten() {
            for file in std::fs::read_dir(container.path()).unwrap().flatten() {
                let text = std::fs::read_to_string(file.path()).unwrap_or_default();
                places.push((format!("pod log {}", file.path().display()), text));
            }
        }
    }
    assert!(
        places.len() > 4,
        "no runtime pod logs found in {}",
        logs.display()
    );
    for (secret, value) in &values {
        for (place, text) in &places {
            assert!(
                !text.contains(value.as_str()),
                "the value of Secret {secret} appears in {place}"
            );
        }
    }
}
