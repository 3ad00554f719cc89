//! The operator's scenarios on the local cluster (issue 5): the real `auren-operator` binary
//! against `KUBECONFIG`, runtime pods in containers on the real node, a private Kafka
//! broker and PostgreSQL per test. Short intervals keep each scenario near two minutes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use auren_operator::api::{AurenRuntime, Outcome, Phase};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::{Value, json};
use support::{
    Env, Load, NAME, Operator, TestNs, WEBHOOK_SECRET, accepted_ids, assert_none_failed,
    metric_value,
};

/// (1) A minimal YAML installs v1: Healthy, both Services answer, consumers store.
#[tokio::test]
async fn install_from_minimal_yaml_serves_and_stores() {
    let env = Env::start("op-install").await;
    let minimal = json!({
        "image": "auren/runtime:v1",
        "config": {"HEALTH_CHECK_INTERVAL": "1", "WEBHOOK_SECRET_OURA": WEBHOOK_SECRET},
        "connections": {
            "databaseUrl": {"name": "db", "key": "url"},
            "kafkaBrokers": env.broker.addr,
        },
    });
    env.create(minimal).await.unwrap();
    let st = env
        .ns
        .wait_status(NAME, "Healthy", 120, |s| s.phase == Some(Phase::Healthy))
        .await;
    let stable = st.stable.clone().unwrap();
    assert_eq!(stable.image, "auren/runtime:v1");
    assert_eq!(st.services.active_text(), Some(stable.hash.as_str()));
    assert_eq!(st.ready.as_deref(), Some("2/2"), "default: two API pods");
    assert_eq!(
        st.history.last().map(|h| h.outcome),
        Some(Outcome::Promoted)
    );

    let client = support::http_client();
    let mut ids = support::Accepted::default();
    for (service, user) in [
        (NAME.to_owned(), "u-active"),
        (format!("{NAME}-preview"), "u-preview"),
    ] {
        let addr = env.ns.service_addr(&service).await;
        for n in 0..10 {
            let answer = support::post_event(&client, &addr, user, n).await;
            assert_eq!(answer.status, 202, "{service} answers");
            assert_eq!(answer.release.as_deref(), Some(stable.hash.as_str()));
            ids.extend(answer.accepted());
        }
    }
    env.assert_stored_once(&ids).await;

    let services = env
        .ns
        .api::<Service>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(services.items.len(), 2, "active and preview Services");
    // Other tests' namespaces may still be terminating: at least this one is counted.
    let metrics = env.operator.metrics().await;
    let healthy = metric_value(&metrics, r#"auren_operator_rollout_phase{phase="Healthy"}"#);
    assert!(healthy >= 1.0, "{metrics}");
    assert!(metric_value(&metrics, r#"auren_operator_reconciles_total{result="ok"}"#) >= 1.0);
}

/// (2) v1 → v2 (good) under constant load through the active Service: promoted, no failed
/// request, every accepted event stored exactly once.
#[tokio::test]
async fn good_release_is_promoted_under_load_without_loss() {
    let env = Env::start("op-promote").await;
    let v1 = env.install("auren/runtime:v1").await;
    let active = Load::start(env.active().await, "u-load");
    tokio::time::sleep(Duration::from_secs(2)).await;

    let v2 = env.release(env.spec("auren/runtime:v2", &[])).await;
    let preview = Load::start(
        env.ns.service_addr(&format!("{NAME}-preview")).await,
        "u-preview",
    );
    let st = env
        .ns
        .wait_status(NAME, "v2 promoted", 150, |s| {
            s.stable.as_ref().is_some_and(|r| r.hash == v2) || s.phase == Some(Phase::RolledBack)
        })
        .await;
    assert_eq!(st.phase, Some(Phase::Healthy), "{:?}", st.message);
    active.carries_on(50).await;
    let answers = active.finish().await;
    let _ = preview.finish().await;

    assert_none_failed(&answers);
    let releases: HashSet<_> = answers.iter().filter_map(|a| a.release.clone()).collect();
    assert!(
        releases.contains(&v1) && releases.contains(&v2),
        "load saw both releases: {releases:?}"
    );
    env.assert_stored_once(&accepted_ids(&answers)).await;
    assert_eq!(st.previous.as_ref().map(|p| p.hash.clone()), Some(v1));
    assert!(
        st.measurements.iter().any(|m| m.revision == v2),
        "v2 was measured"
    );
}

/// (3) A bad release (20 % injected errors) is rolled back automatically; clients of the
/// active Service never see its errors.
#[tokio::test]
async fn bad_release_is_rolled_back_and_active_clients_never_see_it() {
    let env = Env::start("op-rollback").await;
    let v2 = env.install("auren/runtime:v2").await;
    let active = Load::start(env.active().await, "u-load");
    // Roll back at the first failing measurement, so the operator's reaction time is what the
    // rollback-time assertion below measures (with consecutiveFailureLimit N, add N-1 intervals).
    let mut spec = env.spec("auren/runtime:v3", &[("FAULT_ERROR_RATE", "0.2")]);
    spec["allowUnsafe"] = json!(["faults"]); // fault injection on purpose
    spec["analysis"]["failureLimit"] = json!(1);
    spec["analysis"]["consecutiveFailureLimit"] = json!(1);
    env.set_spec(spec).await.unwrap();
    let st = env
        .ns
        .wait_status(NAME, "a candidate", 30, |s| s.candidate.is_some())
        .await;
    let v3 = st.candidate.unwrap().hash;
    let preview = Load::start(
        env.ns.service_addr(&format!("{NAME}-preview")).await,
        "u-preview",
    );
    let st = env
        .ns
        .wait_status(NAME, "RolledBack", 120, |s| {
            s.phase == Some(Phase::RolledBack)
        })
        .await;
    let answers = active.finish().await;
    let _ = preview.finish().await;

    eprintln!("rolled back: {:?}: {:?}", st.reason, st.message);
    assert_eq!(
        st.reason.as_deref(),
        Some("AnalysisFailed"),
        "{:?}",
        st.message
    );
    assert_eq!(st.stable.as_ref().map(|s| s.hash.clone()), Some(v2.clone()));
    assert_eq!(
        st.rejected.as_ref().map(|r| r.hash.clone()),
        Some(v3.clone())
    );
    assert_eq!(st.services.active_text(), Some(v2.as_str()));
    assert!(
        st.message.as_deref().unwrap_or("").contains(&v3),
        "{:?}",
        st.message
    );
    let last = st.history.last().unwrap();
    assert_eq!(
        (last.hash.as_str(), last.outcome),
        (v3.as_str(), Outcome::RolledBack)
    );
    assert!(!answers.is_empty());
    let bad: Vec<_> = answers
        .iter()
        .filter(|a| a.status != 202 || a.release.as_deref() != Some(v2.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "active clients saw: {:?}",
        &bad[..bad.len().min(5)]
    );
    // The candidate's workloads are scaled to zero.
    let st_deploys = env.deployments().await;
    let v3_replicas: Vec<i32> = st_deploys
        .iter()
        .filter(|d| d.0.contains(&v3))
        .map(|d| d.1)
        .collect();
    assert_eq!(v3_replicas, vec![0, 0], "{st_deploys:?}");
    // From the first failing measurement to the rollback decision: within one analysis
    // interval (3 s in these specs) plus 1 s.
    let metrics = env.operator.metrics().await;
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let (sum, count) = (
        value("auren_operator_rollback_seconds_sum"),
        value("auren_operator_rollback_seconds_count"),
    );
    eprintln!("rollback_seconds: sum {sum:?} count {count:?}");
    assert_eq!(count, Some(1.0), "{metrics}");
    assert!(
        sum.unwrap() <= 4.0,
        "first failing measurement to rollback took {sum:?} s"
    );
}

/// Requests with a writing verb (create, update, patch, delete) in an operator's metrics.
fn writes(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("auren_operator_kube_api_requests_total{"))
        .filter(|l| {
            ["create", "update", "patch", "delete"]
                .iter()
                .any(|v| l.starts_with(&format!("verb=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The holder of the operator Lease in the test's namespace.
async fn lease_holder(env: &Env) -> Option<String> {
    let leases = env.ns.api::<k8s_openapi::api::coordination::v1::Lease>();
    let lease = leases.get("auren-operator").await.unwrap();
    lease.spec.and_then(|s| s.holder_identity)
}

/// (4) Two replicas: only the Lease holder leads (its leader gauge 1, the other's 0, and the
/// other writes nothing); killed mid-rollout, the second replica takes the Lease over once it
/// expired and finishes.
#[tokio::test]
async fn a_new_leader_finishes_a_rollout_after_the_operator_is_killed() {
    let mut env = Env::start("op-failover").await;
    let v1 = env.install("auren/runtime:v1").await;
    let first = format!("{}-a", env.ns.name);
    let second_id = format!("{}-b", env.ns.name);
    let mut second = Operator::start(&env.ns.name, "auren-operator", &second_id);
    let mut spec = env.spec("auren/runtime:v2", &[]);
    spec["analysis"]["successfulMeasurementsToPromote"] = json!(4);
    env.set_spec(spec).await.unwrap();
    env.ns
        .wait_status(NAME, "Analyzing", 90, |s| s.phase == Some(Phase::Analyzing))
        .await;
    // The second replica has been up through install and rollout: it must have stayed out.
    let (leader, follower) = (env.operator.metrics().await, second.metrics().await);
    assert_eq!(
        metric_value(&leader, "auren_operator_leader"),
        1.0,
        "{leader}"
    );
    assert_eq!(
        metric_value(&follower, "auren_operator_leader"),
        0.0,
        "{follower}"
    );
    assert_eq!(writes(&follower), 0.0, "the follower wrote:\n{follower}");
    assert!(
        writes(&leader) > 0.0,
        "the leader did the rollout:\n{leader}"
    );
    assert_eq!(lease_holder(&env).await.as_deref(), Some(first.as_str()));

    env.operator.kill9();
    let killed_at = Instant::now();
    let st = env
        .ns
        .wait_status(NAME, "promoted by the new leader", 120, |s| {
            s.phase == Some(Phase::Healthy)
                && s.candidate.is_none()
                && s.stable.as_ref().is_some_and(|r| r.image.ends_with(":v2"))
                || s.phase == Some(Phase::RolledBack)
        })
        .await;
    assert_eq!(st.phase, Some(Phase::Healthy), "{:?}", st.message);
    assert!(
        killed_at.elapsed() > Duration::from_secs(5),
        "the lease held until it expired"
    );
    let now_leader = second.metrics().await;
    assert_eq!(metric_value(&now_leader, "auren_operator_leader"), 1.0);
    assert_eq!(
        lease_holder(&env).await.as_deref(),
        Some(second_id.as_str())
    );
    assert_eq!(st.previous.map(|p| p.hash), Some(v1));
    let outcomes: Vec<Outcome> = st.history.iter().map(|h| h.outcome).collect();
    assert_eq!(outcomes, vec![Outcome::Promoted, Outcome::Promoted]);

    assert_eq!(second.stop(), Some(0), "SIGTERM stops the operator cleanly");
    assert_eq!(
        lease_holder(&env).await,
        None,
        "the lease is released on SIGTERM"
    );
}

/// (5) A candidate that crashes at start is rolled back by the deadline, with the reason.
#[tokio::test]
async fn a_crashing_candidate_is_rolled_back_with_a_clear_reason() {
    let env = Env::start("op-crash").await;
    let v1 = env.install("auren/runtime:v1").await;
    let mut spec = env.spec(
        "auren/runtime:v2",
        &[("HEALTH_CHECK_INTERVAL", "not-a-number")],
    );
    spec["progressDeadlineSeconds"] = json!(30);
    let changed_at = Instant::now();
    env.set_spec(spec).await.unwrap();
    let st = env
        .ns
        .wait_status(NAME, "RolledBack", 60, |s| {
            s.phase == Some(Phase::RolledBack)
        })
        .await;
    assert!(
        changed_at.elapsed() < Duration::from_secs(45),
        "within the deadline + slack"
    );
    let reason = st.reason.clone().unwrap_or_default();
    assert!(
        reason == "CandidateCrashLoop" || reason == "ProgressDeadlineExceeded",
        "reason {reason}: {:?}",
        st.message
    );
    let message = st.message.clone().unwrap_or_default();
    assert!(
        message.contains("crash") || message.contains("waiting"),
        "{message}"
    );
    assert_eq!(st.stable.map(|s| s.hash), Some(v1.clone()));
    let client = support::http_client();
    let answer = support::post_event(&client, &env.active().await, "u", 1).await;
    assert_eq!(
        (answer.status, answer.release.as_deref()),
        (202, Some(v1.as_str()))
    );
}

/// (6) An invalid spec is refused by the API server, and nothing changes: a create, and an
/// update of a running AurenRuntime (its stable release keeps serving).
#[tokio::test]
async fn an_invalid_spec_is_refused_and_changes_nothing() {
    let env = Env::start("op-invalid").await;
    let mut refused = env.spec("Not A Valid Image!", &[]);
    refused["api"]["replicas"] = json!(-1);
    let err = env.create(refused).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422),
        "{err}"
    );

    let v1 = env.install("auren/runtime:v1").await;
    let before = env.deployments().await;
    let mut invalid = env.spec("auren/runtime:v2", &[]);
    invalid["env"] = json!([{"name": "RUN_MODE", "value": "api"}]);
    let err = env.set_spec(invalid).await.unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 422 && s.message.contains("RUN_MODE")),
        "{err}"
    );
    env.settled().await;
    assert_eq!(env.deployments().await, before, "no workload changed");
    let st = env.ns.status(NAME).await;
    assert_eq!(st.phase, Some(Phase::Healthy));
    assert_eq!(st.stable.map(|s| s.hash), Some(v1.clone()));
    assert!(st.candidate.is_none());
    let answer = support::post_event(&support::http_client(), &env.active().await, "u", 1).await;
    assert_eq!(
        (answer.status, answer.release.as_deref()),
        (202, Some(v1.as_str()))
    );
}

/// A canary spec with `steps`.
fn canary(steps: Value) -> Value {
    json!({"strategy": {"canary": {"steps": steps}}})
}

/// A spec with these `checks`.
fn checks(checks: Value) -> Value {
    json!({"analysis": {"checks": checks}})
}

/// Issue 32, point 1: each rule of the CRD (CEL `x-kubernetes-validations`, list keys, OpenAPI
/// bounds) refuses its bad spec at the API server, with a message that says what is wrong and
/// where; the specs beside them that are right, and every example, are accepted. Server-side
/// dry runs: admission and validation run in full, nothing is stored.
#[tokio::test]
async fn the_api_server_refuses_each_invalid_spec_with_its_reason() {
    let ns = TestNs::new("op-cel").await;
    let refused = [
        (
            json!({"strategy": {"blueGreen": {}, "canary": {"steps": [{"setWeight": 10}]}}}),
            "spec.strategy: Invalid value: set at most one of blueGreen and canary",
        ),
        (
            canary(json!([{"setWeight": 10, "pause": {}}])),
            "spec.strategy.canary.steps[0]: Invalid value: a canary step sets exactly one of setWeight, pause and analysis",
        ),
        (
            canary(json!([{"setWeight": 10}, {}])),
            "steps[1]: Invalid value: a canary step sets exactly one",
        ),
        (
            canary(json!([{"setWeight": 101}])),
            "spec.strategy.canary.steps[0].setWeight: Invalid value: 101: spec.strategy.canary.steps[0].setWeight in body should be less than or equal to 100",
        ),
        (
            canary(json!([{"analysis": {"count": 2, "duration": "1m"}}])),
            "steps[0].analysis: Invalid value: an analysis step sets exactly one of count and duration",
        ),
        (
            canary(json!([{"analysis": {}}])),
            "an analysis step sets exactly one of count and duration",
        ),
        (
            canary(json!([{"pause": {"duration": "8761h"}}])),
            "steps[0].pause: Invalid value: duration: at most 8760h (a year)",
        ),
        (
            canary(json!([{"pause": {"duration": "5 minutes"}}])),
            "steps[0].pause.duration: Invalid value: \"5 minutes\"",
        ),
        (
            json!({"analysis": {"interval": "0s"}}),
            "spec.analysis: Invalid value: interval must be longer than zero",
        ),
        (
            json!({"analysis": {"initialDelay": "9000h"}}),
            "initialDelay: at most 8760h (a year)",
        ),
        (
            checks(json!([{"name": "p", "metric": "prometheus", "max": 1}])),
            "spec.analysis.checks[0]: Invalid value: prometheus is required with metric prometheus and allowed only there",
        ),
        (
            checks(
                json!([{"name": "e", "metric": "errorRatio", "max": 1, "prometheus": {"address": "http://p:9090", "query": "up"}}]),
            ),
            "prometheus is required with metric prometheus and allowed only there",
        ),
        (
            checks(json!([{"name": "q", "metric": "errorRatio", "quantile": 0.5, "max": 1}])),
            "quantile is allowed only with metric latency",
        ),
        (
            checks(json!([{"name": "q", "metric": "latency", "quantile": 1.0, "max": 1}])),
            "quantile must be between 0 and 1 (exclusive)",
        ),
        (
            checks(json!([{"name": "n", "metric": "errorRatio"}])),
            "checks[0]: Invalid value: set max, min or baseline",
        ),
        (
            checks(json!([{"name": "m", "metric": "consumerLag", "min": 5, "max": 1}])),
            "min is greater than max",
        ),
        (
            checks(
                json!([{"name": "b", "metric": "prometheus", "max": 1, "baseline": {"maxFactor": 2}, "prometheus": {"address": "http://p:9090", "query": "up"}}]),
            ),
            "baseline is not available for prometheus checks",
        ),
        (
            checks(json!([{"name": "b", "metric": "latency", "baseline": {}}])),
            "checks[0].baseline: Invalid value: baseline needs maxFactor or maxIncrease",
        ),
        (
            checks(
                json!([{"name": "r", "metric": "restarts", "max": 0}, {"name": "r", "metric": "errorRatio", "max": 0.01}]),
            ),
            "spec.analysis.checks[1]: Duplicate value",
        ),
        (
            json!({"env": [{"name": "RUN_MODE", "value": "api"}]}),
            "spec.env[0]: Invalid value: the operator sets RUN_MODE",
        ),
        (
            json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}),
            "spec.env[1]: Duplicate value",
        ),
        (
            json!({"env": [{"name": "9A", "value": "1"}]}),
            "spec.env[0].name: Invalid value: \"9A\"",
        ),
        (
            json!({"config": {"KAFKA_TOPIC": "other"}}),
            "spec: Invalid value: config: the operator sets RUN_MODE",
        ),
        (
            json!({"config": {"9A": "1"}}),
            "config: every key must be an environment variable name",
        ),
        (
            json!({"env": [{"name": "A", "value": "1"}], "config": {"A": "2"}}),
            "env and config: a variable is set in both",
        ),
        (
            json!({"env": [{"name": "FAULT_PRODUCE_ERROR_RATE", "value": "0.2"}]}),
            "env and config: a FAULT_* setting other than 0 is unsafe and refused unless allowUnsafe lists faults",
        ),
        (
            json!({"config": {"FAULT_CRASH_AFTER_SECONDS": "oops"}}),
            "a FAULT_* setting other than 0 is unsafe",
        ),
        (
            json!({"config": {"WEBHOOK_AUTH": " Disabled "}}),
            "WEBHOOK_AUTH=disabled is unsafe and refused unless allowUnsafe lists webhookAuthDisabled",
        ),
        (
            json!({"env": [{"name": "WEBHOOK_AUTH", "value": "disabled"}], "allowUnsafe": ["faults"]}),
            "WEBHOOK_AUTH=disabled is unsafe",
        ),
        (
            json!({"api": {"port": 8001}}),
            "spec.api: Invalid value: port 8001 is the admin port: the admin API must not be exposed",
        ),
        (
            json!({"consumer": {"autoscaler": {"kind": "HorizontalPodAutoscaler", "name": "c"}}, "strategy": {"canary": {"steps": [{"setWeight": 50}], "consumers": "partitionShare"}}}),
            "consumer.autoscaler cannot be used with strategy.canary.consumers: partitionShare",
        ),
    ];
    let accepted = [
        json!({"env": [{"name": "FAULT_PRODUCE_ERROR_RATE", "value": " 0.0 "}], "config": {"FAULT_CRASH_AFTER_SECONDS": "-0e3"}}),
        json!({"env": [{"name": "FAULT_PRODUCE_ERROR_RATE", "value": "0.2"}], "allowUnsafe": ["faults"]}),
        json!({"config": {"WEBHOOK_AUTH": "disabled"}, "allowUnsafe": ["webhookAuthDisabled"]}),
        json!({"config": {"WEBHOOK_AUTH": "required", "LOG_FORMAT": "json"}, "env": [{"name": "A", "value": "1"}]}),
        canary(
            json!([{"setWeight": 0}, {"pause": {}}, {"pause": {"duration": "8760h"}}, {"analysis": {"count": 3}}, {"analysis": {"duration": "1m"}}, {"setWeight": 100}]),
        ),
        json!({"consumer": {"autoscaler": {"kind": "HorizontalPodAutoscaler", "name": "c"}}, "strategy": {"canary": {"steps": [{"setWeight": 50}]}}}),
        checks(
            json!([{"name": "p99", "metric": "latency", "quantile": 0.99, "max": 0.5, "baseline": {"maxIncrease": 0.1}}, {"name": "lag", "metric": "consumerLag", "min": 0, "max": 0}, {"name": "up", "metric": "prometheus", "min": 1, "prometheus": {"address": "http://prometheus.monitoring:9090", "query": "up"}}]),
        ),
    ];
    let mut wrong = Vec::new();
    for (spec, expected) in &refused {
        match dry_run_create(&ns, spec).await {
            Err(kube::Error::Api(e)) if e.code == 422 && e.message.contains(expected) => {}
            other => wrong.push(format!(
                "{spec}\n  expected 422 with {expected:?}\n  got {other:?}"
            )),
        }
    }
    for spec in &accepted {
        if let Err(e) = dry_run_create(&ns, spec).await {
            wrong.push(format!("{spec}\n  expected to be accepted, got {e}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} specs judged wrongly:\n{}",
        wrong.len(),
        refused.len() + accepted.len(),
        wrong.join("\n")
    );
    for example in ["minimal", "bluegreen-analysis", "canary-steps"] {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/");
        support::kubectl(
            &[
                "apply",
                "--dry-run=server",
                "-n",
                &ns.name,
                "-f",
                &format!("{path}{example}.yaml"),
            ],
            None,
        );
    }
}

/// Creates an AurenRuntime with `spec` (over an image) in a server-side dry run.
async fn dry_run_create(ns: &TestNs, spec: &Value) -> Result<DynamicObject, kube::Error> {
    let mut spec = spec.clone();
    spec["image"] = json!("auren/runtime:v1");
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "auren.io/v1alpha1",
        "kind": "AurenRuntime",
        "metadata": {"name": "judged"},
        "spec": spec,
    }))
    .unwrap();
    let resource = ApiResource::erase::<AurenRuntime>(&());
    let api = Api::<DynamicObject>::namespaced_with(ns.client.clone(), &ns.name, &resource);
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    api.create(&params, &object).await
}

/// Controls without editing the spec: with auto-promotion off the rollout waits (Paused,
/// AwaitingPromotion) until `kubectl auren promote`; `status` and `history` say where it stands.
#[tokio::test]
async fn kubectl_auren_promotes_a_release_waiting_for_a_human() {
    let env = Env::start("op-plugin").await;
    env.install("auren/runtime:v1").await;
    let mut spec = env.spec("auren/runtime:v2", &[]);
    spec["strategy"]["blueGreen"]["autoPromotion"] = json!(false);
    env.set_spec(spec).await.unwrap();
    let st = env
        .ns
        .wait_status(NAME, "AwaitingPromotion", 90, |s| {
            s.reason.as_deref() == Some("AwaitingPromotion")
        })
        .await;
    assert_eq!(st.phase, Some(Phase::Paused));
    let v2 = st.candidate.unwrap().hash;

    let status = support::kubectl_auren(&["-n", &env.ns.name, "status", NAME]);
    assert!(
        status.contains("Phase:      Paused (AwaitingPromotion)"),
        "{status}"
    );
    support::kubectl_auren(&["-n", &env.ns.name, "promote", NAME]);
    let st = env
        .ns
        .wait_status(NAME, "promoted by hand", 60, |s| {
            s.stable.as_ref().is_some_and(|r| r.hash == v2) && s.phase == Some(Phase::Healthy)
        })
        .await;
    assert!(
        st.acknowledged.promote.is_some(),
        "the annotation was acknowledged"
    );
    let history = support::kubectl_auren(&["-n", &env.ns.name, "history", NAME]);
    assert_eq!(
        history.lines().filter(|l| l.contains("Promoted")).count(),
        2,
        "{history}"
    );
}
