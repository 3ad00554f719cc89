//! Analysis windows. The last scrape of each measured revision is kept in memory as the start
//! of its next window: once that start is an `interval` old, the pods are scraped again, the
//! window is evaluated and the new scrape becomes the next start. A restarted operator simply
//! takes a fresh start scrape (one interval is lost, nothing is counted twice).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;

use crate::analysis::{self, Evidence, Exposition, PodWindow, Window};
use crate::api::{AurenRuntimeSpec, Measurement, MetricKind};
use crate::resources::Role;
use crate::rollout::AnalysisRequest;

use super::observe::{self, Cluster};
use super::{pod_api, prometheus};

/// One scrape of the pods of one revision.
#[derive(Debug, Clone)]
struct Scrape {
    at: Timestamp,
    pods: BTreeMap<String, Exposition>,
    restarts: i32,
    /// Shared dependencies the scraped pods' `/health` reports down.
    dependencies_down: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct Tracking {
    request: AnalysisRequest,
    starts: BTreeMap<String, Scrape>,
}

/// Window starts per AurenRuntime (`namespace/name`).
#[derive(Debug, Default)]
pub struct Windows(Mutex<HashMap<String, Tracking>>);

impl Windows {
    fn get(&self, key: &str) -> Option<Tracking> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn put(&self, key: &str, tracking: Option<Tracking>) {
        if let Ok(mut map) = self.0.lock() {
            match tracking {
                Some(t) => map.insert(key.to_owned(), t),
                None => map.remove(key),
            };
        }
    }

    /// Time until the tracked window is an interval long (`None`: nothing tracked).
    pub fn until_due(&self, key: &str, now: Timestamp) -> Option<std::time::Duration> {
        let tracking = self.get(key)?;
        let start = tracking.starts.get(&tracking.request.candidate)?;
        let interval = SignedDuration::try_from(tracking.request.interval).ok()?;
        let due = start.at.checked_add(interval).ok()?;
        let wait = due.duration_since(now);
        Some(std::time::Duration::try_from(wait).unwrap_or_default())
    }

    /// Evaluates the window of the tracked revision once it is an interval long.
    pub async fn measure(
        &self,
        http: &reqwest::Client,
        key: &str,
        spec: &AurenRuntimeSpec,
        cluster: &Cluster,
        now: Timestamp,
    ) -> Vec<Measurement> {
        let Some(mut tracking) = self.get(key) else {
            return Vec::new();
        };
        let request = tracking.request.clone();
        let Some(start) = tracking.starts.get(&request.candidate).cloned() else {
            return Vec::new();
        };
        let interval = SignedDuration::try_from(request.interval).unwrap_or(SignedDuration::MAX);
        if now < start.at.checked_add(interval).unwrap_or(Timestamp::MAX) {
            return Vec::new();
        }
        let end = scrape(http, cluster, &request.candidate, now).await;
        if end.pods.is_empty() {
            return Vec::new();
        }
        let mut candidate = evidence(&start, &end);
        candidate.prometheus = prometheus_values(http, spec, &request.candidate).await;
        let baseline = match baseline_revision(&request) {
            Some(rev) => self.baseline(http, cluster, &mut tracking, rev, now).await,
            None => None,
        };
        let at = Time(now);
        let measurements = analysis::evaluate(
            &spec.analysis,
            &request.candidate,
            &candidate,
            baseline.as_ref(),
            &at,
        );
        tracking.starts.insert(request.candidate.clone(), end);
        self.put(key, Some(tracking));
        measurements
    }

    async fn baseline(
        &self,
        http: &reqwest::Client,
        cluster: &Cluster,
        tracking: &mut Tracking,
        revision: &str,
        now: Timestamp,
    ) -> Option<Evidence> {
        let start = tracking.starts.get(revision).cloned()?;
        let end = scrape(http, cluster, revision, now).await;
        let evidence = evidence(&start, &end);
        tracking.starts.insert(revision.to_owned(), end);
        Some(evidence)
    }

    /// Remembers what the plan asks to measure and takes the first start scrape at once.
    pub async fn track(
        &self,
        http: &reqwest::Client,
        key: &str,
        request: Option<&AnalysisRequest>,
        cluster: &Cluster,
        now: Timestamp,
    ) {
        let Some(request) = request else {
            return self.put(key, None);
        };
        let mut tracking = match self.get(key) {
            Some(t) if t.request.candidate == request.candidate => t,
            _ => Tracking {
                request: request.clone(),
                starts: BTreeMap::new(),
            },
        };
        tracking.request = request.clone();
        let wanted = [Some(request.candidate.as_str()), baseline_revision(request)];
        for revision in wanted.into_iter().flatten() {
            if !tracking.starts.contains_key(revision) {
                let start = scrape(http, cluster, revision, now).await;
                if !start.pods.is_empty() {
                    tracking.starts.insert(revision.to_owned(), start);
                }
            }
        }
        self.put(key, Some(tracking));
    }
}

/// The stable revision (the previous one in the post-promotion watch), measured over the same
/// window: baselines compare with it, and a check the candidate fails is an outage, not the
/// candidate's failure, when the stable release fails it too.
fn baseline_revision(request: &AnalysisRequest) -> Option<&str> {
    request.baseline.as_deref()
}

/// Results of the `metric: prometheus` checks for `revision` (`{{revision}}` in each query),
/// by check name, queried at the window's end. A failed query is logged and left out: no
/// data, which the check's no-data policy judges. (Prometheus checks have no baseline.)
async fn prometheus_values(
    http: &reqwest::Client,
    spec: &AurenRuntimeSpec,
    revision: &str,
) -> BTreeMap<String, f64> {
    let mut values = BTreeMap::new();
    let checks = spec
        .analysis
        .checks
        .iter()
        .filter(|c| c.metric == MetricKind::Prometheus);
    for check in checks {
        let Some(source) = &check.prometheus else {
            continue;
        };
        let query = prometheus::substitute(&source.query, revision);
        match prometheus::query(http, &source.address, &query).await {
            Ok(Some(value)) => {
                values.insert(check.name.clone(), value);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(check = %check.name, %revision, %error, "prometheus query failed");
            }
        }
    }
    values
}

fn evidence(start: &Scrape, end: &Scrape) -> Evidence {
    let pods = end
        .pods
        .iter()
        .map(|(name, exposition)| PodWindow {
            start: start.pods.get(name).cloned(),
            end: exposition.clone(),
        })
        .collect();
    Evidence {
        window: Window { pods },
        restarts: Some(f64::from((end.restarts - start.restarts).max(0))),
        prometheus: BTreeMap::new(),
        // An outage that began or ended inside the window still spans one of its ends.
        unhealthy_dependencies: start
            .dependencies_down
            .union(&end.dependencies_down)
            .cloned()
            .collect(),
    }
}

/// Scrapes the running API and consumer pods of `revision`; pods that do not answer are left
/// out (their restarts still count).
async fn scrape(
    http: &reqwest::Client,
    cluster: &Cluster,
    revision: &str,
    now: Timestamp,
) -> Scrape {
    let mut scrape = Scrape {
        at: now,
        pods: BTreeMap::new(),
        restarts: 0,
        dependencies_down: BTreeSet::new(),
    };
    for role in [Role::Api, Role::Consumer] {
        for pod in cluster.pods_of(revision, role) {
            scrape.restarts += super::observe::restarts(pod);
            let Some(addr) = observe::address(pod).filter(|_| observe::running(pod)) else {
                continue;
            };
            if let Ok(exposition) = pod_api::scrape(http, &addr).await {
                scrape.pods.insert(pod.name_any(), exposition);
                let down = cluster.dependencies_down.get(&pod.name_any());
                scrape
                    .dependencies_down
                    .extend(down.into_iter().flatten().cloned());
            }
        }
    }
    scrape
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis;
    use crate::api::{Check, PrometheusQuery, Verdict};

    /// A Prometheus-API stand-in: `errors{…"good"…}` has a sample, anything else is empty,
    /// `broken` answers garbage.
    async fn serve() -> String {
        use axum::extract::Query;
        use axum::routing::get;
        async fn answer(Query(q): Query<BTreeMap<String, String>>) -> String {
            let query = q.get("query").cloned().unwrap_or_default();
            if query == "broken" {
                return "nope".into();
            }
            let result = if query.contains("\"good\"") {
                r#"[{"metric":{},"value":[1,"0.002"]}]"#
            } else {
                "[]"
            };
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":{result}}}}}"#)
        }
        let app = axum::Router::new().route("/api/v1/query", get(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}")
    }

    fn check(name: &str, address: &str, query: &str) -> Check {
        Check {
            name: name.into(),
            metric: MetricKind::Prometheus,
            quantile: None,
            prometheus: Some(PrometheusQuery {
                address: address.into(),
                query: query.into(),
            }),
            max: Some(0.01),
            min: None,
            baseline: None,
            no_data: None,
        }
    }

    #[tokio::test]
    async fn prometheus_results_become_evidence_by_check_name() {
        let address = serve().await;
        let mut spec = AurenRuntimeSpec::with_image("auren/runtime:v1");
        spec.analysis.checks = vec![
            check("errors", &address, r#"errors{revision="{{revision}}"}"#),
            check("empty", &address, "absent"),
            check("broken", &address, "broken"),
        ];
        let values = prometheus_values(&reqwest::Client::new(), &spec, "good").await;
        assert_eq!(values, BTreeMap::from([("errors".to_owned(), 0.002)]));

        let evidence = Evidence {
            prometheus: values,
            ..Evidence::default()
        };
        let at = Time(Timestamp::UNIX_EPOCH);
        let measured = analysis::evaluate(&spec.analysis, "good", &evidence, None, &at);
        let got: Vec<_> = measured
            .iter()
            .map(|m| (m.check.as_str(), m.value, m.verdict))
            .collect();
        assert_eq!(
            got,
            vec![
                ("errors", Some(0.002), Verdict::Pass),
                ("empty", None, Verdict::Pass),
                ("broken", None, Verdict::Pass),
            ],
            "no data (empty or failed) follows the default policy, ignore"
        );
        let other = prometheus_values(&reqwest::Client::new(), &spec, "bad").await;
        assert!(other.is_empty(), "{{revision}} is substituted: {other:?}");
    }

    #[test]
    fn dependencies_down_at_either_end_of_the_window_are_evidence() {
        let scrape = |down: &[&str]| Scrape {
            at: Timestamp::UNIX_EPOCH,
            pods: BTreeMap::from([("p".to_owned(), Exposition::default())]),
            restarts: 0,
            dependencies_down: down.iter().map(|d| (*d).to_owned()).collect(),
        };
        let across = evidence(&scrape(&["kafka"]), &scrape(&["database"]));
        assert_eq!(
            across.dependencies_down(),
            BTreeSet::from(["database".to_owned(), "kafka".to_owned()])
        );
        assert!(
            evidence(&scrape(&[]), &scrape(&[]))
                .dependencies_down()
                .is_empty()
        );
    }
}
