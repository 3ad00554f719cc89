//! The analysis's `prometheus` check against a real Prometheus (issue 32, point 8): Prometheus
//! 3.16 built from the Go module proxy (`e2e/cluster/k8s/build.sh prometheus`, exported as
//! `AUREN_PROMETHEUS` by scripts/e2e.sh) runs beside the cluster and finds the runtime pods
//! through Kubernetes service discovery, as a user's Prometheus does. The error cases a real
//! Prometheus cannot produce on demand (garbage, 503, a parse error) stay in the operator's
//! `prometheus_provider` tests against a hand-written server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auren_operator::api::{AurenRuntimeStatus, Phase, Verdict};
use serde_json::{Value, json};
use support::{Env, Load, NAME, free_port, wait_for};

const CHECK: &str = "prometheus-error-ratio";

/// The query of examples/canary-steps.yaml's `prometheus-error-ratio` check (the candidate's
/// share of webhook requests answered 5xx), over 15 s instead of its 2 minutes: what the
/// example tells users to run is what runs here.
fn example_query() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/canary-steps.yaml");
    let example: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let checks = example["spec"]["analysis"]["checks"].as_array().unwrap();
    let check = checks.iter().find(|c| c["name"] == CHECK).unwrap();
    let query = check["prometheus"]["query"].as_str().unwrap();
    assert!(query.contains("[2m]"), "{query}");
    query.replace("[2m]", "[15s]")
}

/// A Prometheus of this test's own on 127.0.0.1, scraping every second the runtime pods of one
/// namespace on their `http` port, with their `auren.io/revision` label as `revision` (what
/// examples/canary-steps.yaml assumes). Stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Prometheus {
    async fn start(namespace: &str) -> Prometheus {
        let bin = std::env::var("AUREN_PROMETHEUS").expect(
            "AUREN_PROMETHEUS (e2e/cluster/k8s/build.sh prometheus) is exported by scripts/e2e.sh",
        );
        let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG of the local cluster");
        let dir = std::env::temp_dir().join(format!("auren-e2e-prometheus-{namespace}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, scrape_config(namespace, &kubeconfig)).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let ready = format!("{}/-/ready", prometheus.url);
        wait_for("Prometheus ready", 60, || async {
            let answer = reqwest::get(&ready).await.ok()?;
            answer.status().is_success().then_some(())
        })
        .await;
        prometheus
    }

    /// The active scrape targets' `revision` labels, one per healthy target.
    async fn healthy_revisions(&self) -> Vec<String> {
        let url = format!("{}/api/v1/targets?state=active", self.url);
        let Ok(answer) = reqwest::get(&url).await else {
            return Vec::new();
        };
        let targets: Value = answer.json().await.unwrap_or_default();
        let active = targets["data"]["activeTargets"].as_array().cloned();
        active
            .unwrap_or_default()
            .iter()
            .filter(|t| t["health"] == "up")
            .filter_map(|t| t["labels"]["revision"].as_str().map(str::to_owned))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scrape_config(namespace: &str, kubeconfig: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: auren-runtime
    kubernetes_sd_configs:
      - role: pod
        kubeconfig_file: {kubeconfig}
        namespaces:
          names: [{namespace}]
    relabel_configs:
      - source_labels: [__meta_kubernetes_pod_label_app_kubernetes_io_name]
        regex: auren-runtime
        action: keep
      - source_labels: [__meta_kubernetes_pod_container_port_name]
        regex: http
        action: keep
      - source_labels: [__meta_kubernetes_pod_label_auren_io_revision]
        target_label: revision
      - source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
"#
    )
}

/// A canary of 2 API pods: half the traffic, three measurements, then all of it. The only
/// check is the Prometheus query, so it alone decides.
fn canary(env: &Env, prometheus: &Prometheus, image: &str, error_rate: &str) -> Value {
    let mut spec = env.spec(image, &[("FAULT_ERROR_RATE", error_rate)]);
    spec["api"]["replicas"] = json!(2);
    spec["allowUnsafe"] = json!(["faults"]);
    spec["strategy"] = json!({"canary": {"scaleDownDelaySeconds": 5, "steps": [
        {"setWeight": 50}, {"analysis": {"count": 3}}, {"setWeight": 100},
    ]}});
    spec["analysis"]["interval"] = json!("5s");
    spec["analysis"]["checks"] = json!([{
        "name": CHECK,
        "metric": "prometheus",
        "prometheus": {"address": prometheus.url, "query": example_query()},
        "max": 0.05,
        "noData": "fail",
    }]);
    spec
}

/// The Prometheus check's measurements of `revision`: (verdict, value).
fn measured(st: &AurenRuntimeStatus, revision: &str) -> Vec<(Verdict, Option<f64>)> {
    st.measurements
        .iter()
        .filter(|m| m.check == CHECK && m.revision == revision)
        .map(|m| (m.verdict, m.value))
        .collect()
}

/// Waits until Prometheus scrapes a healthy target of `revision`.
async fn scraped(prometheus: &Prometheus, revision: &str) {
    let what = format!("Prometheus scraping revision {revision}");
    wait_for(&what, 60, || async {
        let revisions = prometheus.healthy_revisions().await;
        revisions.iter().any(|r| r == revision).then_some(())
    })
    .await;
}

/// A good canary (no injected errors) is promoted on the error ratio a real Prometheus
/// measured from the runtime pods' own metrics, and a bad one (30 % of webhooks answered 503)
/// is rolled back by the same query: every verdict rests on a value, none on missing data.
#[tokio::test]
async fn a_prometheus_check_on_a_real_prometheus_promotes_a_good_canary_and_rolls_back_a_bad_one() {
    let env = Env::start("prometheus").await;
    let prometheus = Prometheus::start(&env.ns.name).await;
    let v1 = env
        .install_spec(canary(&env, &prometheus, "auren/runtime:v1", "0"))
        .await;
    scraped(&prometheus, &v1).await;
    let load = Load::workers(env.active().await, "u-prom", 2, Duration::from_millis(30));

    env.set_spec(canary(&env, &prometheus, "auren/runtime:v2", "0"))
        .await
        .unwrap();
    let st = env
        .ns
        .wait_status(NAME, "v2 promoted or rolled back", 180, |s| {
            s.stable.as_ref().is_some_and(|r| r.hash != v1) || s.phase == Some(Phase::RolledBack)
        })
        .await;
    assert_eq!(st.phase, Some(Phase::Healthy), "{:?}", st.message);
    let v2 = st.stable.as_ref().unwrap().hash.clone();
    let good = measured(&st, &v2);
    eprintln!("v2 (good) measured by Prometheus: {good:?}");
    assert!(
        good.iter()
            .any(|(verdict, value)| *verdict == Verdict::Pass && value.is_some_and(|v| v <= 0.05)),
        "v2 was promoted on a measured error ratio: {good:?}"
    );

    env.set_spec(canary(&env, &prometheus, "auren/runtime:v3", "0.3"))
        .await
        .unwrap();
    let st = env
        .ns
        .wait_status(NAME, "v3 rolled back", 180, |s| {
            s.phase == Some(Phase::RolledBack) || s.stable.as_ref().is_some_and(|r| r.hash != v2)
        })
        .await;
    let _ = load.finish().await;
    assert_eq!(st.phase, Some(Phase::RolledBack), "{:?}", st.message);
    assert_eq!(st.reason.as_deref(), Some("AnalysisFailed"));
    assert_eq!(
        st.stable.as_ref().map(|r| r.hash.as_str()),
        Some(v2.as_str())
    );
    let v3 = st.rejected.as_ref().unwrap().hash.clone();
    let bad = measured(&st, &v3);
    eprintln!("v3 (bad) measured by Prometheus: {bad:?}");
    assert!(
        bad.iter()
            .any(|(verdict, value)| *verdict == Verdict::Fail && value.is_some_and(|v| v > 0.05)),
        "v3 was rolled back on a measured error ratio: {bad:?}"
    );
}
