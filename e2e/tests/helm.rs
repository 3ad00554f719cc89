//! The Helm lifecycle as a Helm user runs it (issue 32, point 5), with the project's pinned helm
//! (`scripts/helm.sh`, exported as `HELM` by scripts/e2e.sh): `helm install` of the operator,
//! `helm upgrade` while a rollout is in analysis, `helm rollback`, `helm uninstall`. The release
//! minds only its own namespace (`watchNamespace`), so it cannot touch another test's objects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use auren_operator::api::{Outcome, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::Api;
use serde_json::json;
use support::{Env, Load, NAME, Operator, TestNs, accepted_ids, assert_none_failed, wait_for};

const RELEASE: &str = "auren";
const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/auren-operator");

/// `helm <args> --namespace <ns>`; panics with helm's own words when it fails.
fn helm(ns: &str, args: &[&str]) -> String {
    let bin = std::env::var("HELM").expect("HELM (scripts/helm.sh) is exported by scripts/e2e.sh");
    let out = Command::new(bin)
        .args(args)
        .args(["--namespace", ns])
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The chart's values for a release that minds only `ns`.
fn scoped(ns: &str) -> Vec<String> {
    vec![
        "--set".into(),
        format!("watchNamespace={ns}"),
        "--set".into(),
        format!("fullnameOverride=auren-operator-{ns}"),
    ]
}

fn helm_with(ns: &str, args: &[&str], values: &[&str]) -> String {
    let scope = scoped(ns);
    let all: Vec<&str> = args
        .iter()
        .copied()
        .chain(scope.iter().map(String::as_str))
        .chain(values.iter().copied())
        .collect();
    helm(ns, &all)
}

/// The operator Deployment's log level (`RUST_LOG`, the chart's `logLevel`).
async fn operator_log_level(ns: &TestNs) -> Option<String> {
    let name = format!("auren-operator-{}", ns.name);
    let deployment = ns.api::<Deployment>().get(&name).await.ok()?;
    let deployment = serde_json::to_value(deployment).ok()?;
    let env = deployment
        .pointer("/spec/template/spec/containers/0/env")?
        .as_array()?;
    let level = env.iter().find(|e| e["name"] == "RUST_LOG")?;
    level["value"].as_str().map(str::to_owned)
}

/// Both operator replicas of the current Helm revision are ready.
async fn wait_operator_ready(ns: &TestNs) {
    let name = format!("auren-operator-{}", ns.name);
    wait_for("2 ready, updated operator replicas", 180, || async {
        let d = ns.api::<Deployment>().get(&name).await.ok()?;
        let status = d.status?;
        let settled = status.updated_replicas? == 2
            && status.ready_replicas? == 2
            && status.replicas? == 2
            && status.observed_generation? == d.metadata.generation?;
        settled.then_some(())
    })
    .await;
}

async fn crd_version(ns: &TestNs) -> String {
    Api::<CustomResourceDefinition>::all(ns.client.clone())
        .get("aurenruntimes.auren.io")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap()
}

/// install → a release in analysis → `helm upgrade` of the operator (its pods replaced, the
/// leadership handed over) → the rollout ends as it would have: promoted once, no request
/// through the active Service failed, every accepted event stored once. Then `helm rollback`
/// restores the first revision's values, and `helm uninstall` removes the operator but leaves
/// the CRD, the AurenRuntime and its serving pods in place.
#[tokio::test]
async fn helm_install_upgrade_mid_analysis_rollback_and_uninstall() {
    let env = Env::start_with("helm", async |ns: &TestNs| {
        helm_with(
            &ns.name,
            &["install", RELEASE, CHART, "--wait", "--timeout", "180s"],
            &[],
        );
        wait_operator_ready(ns).await;
        Operator::in_cluster()
    })
    .await;
    let crd_before = crd_version(&env.ns).await;
    let v1 = env.install("auren/runtime:v1").await;
    let active_addr = env.ns.cluster_addr(NAME).await;
    let client = support::http_client();
    wait_for("the active Service to answer", 60, || async {
        let answer = support::post_event(&client, &active_addr, "u-helm-probe", 0).await;
        (answer.status == 202).then_some(())
    })
    .await;
    let active = Load::workers(active_addr.clone(), "u-helm", 2, Duration::from_millis(40));

    // A long analysis (30 passing measurements, 2 s apart) so the upgrade lands inside it.
    let mut spec = env.spec("auren/runtime:v2", &[]);
    spec["analysis"]["interval"] = json!("2s");
    spec["analysis"]["successfulMeasurementsToPromote"] = json!(30);
    let v2 = env.release(spec).await;
    let preview = Load::start(
        env.ns.cluster_addr(&format!("{NAME}-preview")).await,
        "u-prev",
    );
    env.ns
        .wait_status(NAME, "v2 in analysis", 120, |s| {
            s.phase == Some(Phase::Analyzing)
        })
        .await;

    helm_with(
        &env.ns.name,
        &["upgrade", RELEASE, CHART, "--wait", "--timeout", "180s"],
        &["--set", "logLevel=debug"],
    );
    wait_operator_ready(&env.ns).await;
    assert_eq!(operator_log_level(&env.ns).await.as_deref(), Some("debug"));
    let during = env.ns.status(NAME).await;
    eprintln!("after helm upgrade: phase {:?}", during.phase);
    assert!(
        during.stable.as_ref().is_some_and(|s| s.hash == v1),
        "the upgrade finished before the promotion: {during:?}"
    );
    assert_eq!(
        crd_version(&env.ns).await,
        crd_before,
        "helm upgrade left the CRD alone"
    );

    let st = env
        .ns
        .wait_status(NAME, "v2 promoted by the upgraded operator", 240, |s| {
            s.stable.as_ref().is_some_and(|r| r.hash == v2) || s.phase == Some(Phase::RolledBack)
        })
        .await;
    let _ = preview.finish().await;
    assert_eq!(st.phase, Some(Phase::Healthy), "{:?}", st.message);
    let promotions = st
        .history
        .iter()
        .filter(|r| r.hash == v2 && r.outcome == Outcome::Promoted)
        .count();
    assert_eq!(promotions, 1, "v2 promoted once: {:?}", st.history);
    assert!(
        !st.history
            .iter()
            .any(|r| r.hash == v2 && r.outcome == Outcome::RolledBack),
        "{:?}",
        st.history
    );

    helm(
        &env.ns.name,
        &["rollback", RELEASE, "1", "--wait", "--timeout", "180s"],
    );
    wait_operator_ready(&env.ns).await;
    assert_eq!(operator_log_level(&env.ns).await.as_deref(), Some("info"));
    let history = helm(&env.ns.name, &["history", RELEASE, "--output", "json"]);
    let revisions: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
    assert_eq!(revisions.len(), 3, "install, upgrade, rollback: {history}");

    helm(
        &env.ns.name,
        &["uninstall", RELEASE, "--wait", "--timeout", "120s"],
    );
    let name = format!("auren-operator-{}", env.ns.name);
    wait_for("the operator Deployment gone", 60, || async {
        env.ns
            .api::<Deployment>()
            .get(&name)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    assert_eq!(crd_version(&env.ns).await, crd_before, "the CRD stays");
    let kept = env.ns.status(NAME).await;
    assert!(
        kept.stable.as_ref().is_some_and(|s| s.hash == v2),
        "the AurenRuntime stays: {kept:?}"
    );
    active.carries_on(50).await;
    let answers = active.finish().await;
    assert_none_failed(&answers);
    let releases: HashSet<_> = answers.iter().filter_map(|a| a.release.clone()).collect();
    assert!(
        releases.contains(&v2),
        "v2 served after the uninstall: {releases:?}"
    );
    let ids = accepted_ids(&answers);
    env.assert_stored_once(&ids).await;
    eprintln!(
        "helm: install, upgrade mid-analysis, rollback, uninstall; {} requests, none failed, \
         v1 {v1} -> v2 {v2} promoted once",
        answers.len()
    );
}
