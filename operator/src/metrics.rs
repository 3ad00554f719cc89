//! The operator's one Prometheus registry, prefixed `auren_operator_`. Labels stay low in
//! cardinality: results, error variants, phases and verdicts — never object names.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{Measurement, Phase, Verdict};

const PHASES: [Phase; 8] = [
    Phase::Healthy,
    Phase::Progressing,
    Phase::Analyzing,
    Phase::Promoting,
    Phase::Paused,
    Phase::RolledBack,
    Phase::Degraded,
    Phase::InvalidSpec,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: &'static str,
}

/// An API request in RBAC's words: verb and resource (with its subresource).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabel {
    pub verb: &'static str,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GateLabel {
    gate: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

/// Every metric the operator exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    duration: Histogram,
    decision: Histogram,
    phases: Family<PhaseLabel, Gauge>,
    verdicts: Family<VerdictLabel, Counter>,
    rollback: Histogram,
    api_requests: Family<RequestLabel, Counter>,
    api_refused: Counter,
    leader: Gauge,
    gate_follow: Family<GateLabel, Histogram>,
    health_pushes: Counter,
    notifications: Family<ResultLabel, Counter>,
    notification_retries: Counter,
    /// Phase of each AurenRuntime (`namespace/name`), the source of the phase gauge.
    current: Mutex<HashMap<String, Phase>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("auren_operator");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let decision = Histogram::new(exponential_buckets(0.00001, 2.0, 16));
        let phases = Family::<PhaseLabel, Gauge>::default();
        let verdicts = Family::<VerdictLabel, Counter>::default();
        let rollback = Histogram::new([0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0]);
        registry.register("reconciles", "Reconciles by result", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error variant",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        registry.register(
            "decision_duration_seconds",
            "Time the pure part of a reconcile took (decide, no API calls)",
            decision.clone(),
        );
        registry.register(
            "rollout_phase",
            "AurenRuntimes in each phase",
            phases.clone(),
        );
        registry.register(
            "analysis_verdicts",
            "Analysis measurements by verdict",
            verdicts.clone(),
        );
        registry.register(
            "rollback_seconds",
            "Seconds from the first failing measurement to traffic back on stable",
            rollback.clone(),
        );
        let api_requests = Family::<RequestLabel, Counter>::default();
        registry.register(
            "kube_api_requests",
            "Requests sent to the Kubernetes API server, by RBAC verb and resource",
            api_requests.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the Lease and runs the controller, 0 otherwise",
            leader.clone(),
        );
        let api_refused = Counter::default();
        registry.register(
            "kube_api_refused",
            "Requests the Kubernetes API server refused as unauthenticated or forbidden (401/403)",
            api_refused.clone(),
        );
        let gate_follow = Family::<GateLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0,
            ])
        });
        registry.register(
            "readiness_gate_follow_seconds",
            "Seconds from a pod's /health changing to its readiness gate written (gate=open|closed)",
            gate_follow.clone(),
        );
        let health_pushes = Counter::default();
        registry.register(
            "health_changes",
            "Health changes pods pushed to the operator (answers of their /health long polls)",
            health_pushes.clone(),
        );
        let notifications = Family::<ResultLabel, Counter>::default();
        registry.register(
            "notifications",
            "Notifications by result: sent, failed (every attempt, or the Secret), dropped (queue full)",
            notifications.clone(),
        );
        let notification_retries = Counter::default();
        registry.register(
            "notification_retries",
            "Notification attempts after a failed one",
            notification_retries.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            decision,
            phases,
            verdicts,
            rollback,
            api_requests,
            api_refused,
            leader,
            gate_follow,
            health_pushes,
            notifications,
            notification_retries,
            current: Mutex::new(HashMap::new()),
        }
    }

    /// One reconcile ended; `error` is the error variant's name when it failed.
    pub fn reconciled(&self, took: Duration, error: Option<&'static str>) {
        let result = if error.is_some() { "error" } else { "ok" };
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        if let Some(error) = error {
            self.errors.get_or_create(&ErrorLabel { error }).inc();
        }
        self.duration.observe(took.as_secs_f64());
    }

    /// The pure decision of one reconcile took `took` (API latency excluded).
    pub fn decided(&self, took: Duration) {
        self.decision.observe(took.as_secs_f64());
    }

    pub fn measured(&self, measurements: &[Measurement]) {
        for m in measurements {
            let verdict = match m.verdict {
                Verdict::Pass => "Pass",
                Verdict::Fail => "Fail",
                Verdict::Inconclusive => "Inconclusive",
                Verdict::DependencyOutage => "DependencyOutage",
            };
            self.verdicts.get_or_create(&VerdictLabel { verdict }).inc();
        }
    }

    pub fn rolled_back(&self, seconds: f64) {
        self.rollback.observe(seconds.max(0.0));
    }

    /// A readiness gate was written `seconds` after the pod's `/health` changed.
    pub fn gate_followed(&self, open: bool, seconds: f64) {
        let gate = if open { "open" } else { "closed" };
        let histogram = self.gate_follow.get_or_create(&GateLabel { gate });
        histogram.observe(seconds.max(0.0));
    }

    /// A pod's `/health` long poll answered with a new health state.
    pub fn health_pushed(&self) {
        self.health_pushes.inc();
    }

    /// A notification ended: `sent`, `failed` or `dropped`.
    pub fn notification(&self, result: &'static str) {
        self.notifications
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// A notification is attempted again.
    pub fn notification_retry(&self) {
        self.notification_retries.inc();
    }

    /// This replica started (`true`) or stopped (`false`) running the controller.
    pub fn leading(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// One request to the API server is about to be sent.
    pub fn api_request<B>(&self, request: &http::Request<B>) {
        self.api_requests.get_or_create(&rbac_terms(request)).inc();
    }

    /// The API server answered; refusals are counted (RBAC too narrow, token revoked).
    pub fn api_response(&self, status: http::StatusCode) {
        if matches!(status.as_u16(), 401 | 403) {
            self.api_refused.inc();
        }
    }

    /// Records the phase of one AurenRuntime (`None`: it is gone) and refreshes the gauge.
    pub fn phase(&self, key: &str, phase: Option<Phase>) {
        let Ok(mut current) = self.current.lock() else {
            return;
        };
        match phase {
            Some(phase) => current.insert(key.to_owned(), phase),
            None => current.remove(key),
        };
        for p in PHASES {
            let count = current.values().filter(|v| **v == p).count();
            self.phases
                .get_or_create(&PhaseLabel { phase: p.as_str() })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text of the registry.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// The RBAC verb and resource of a request to the API server (`/api/v1/...` or
/// `/apis/{group}/{version}/...`, namespaced or not).
pub fn rbac_terms<B>(request: &http::Request<B>) -> RequestLabel {
    let segments: Vec<&str> = request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        _ => &[][..],
    };
    let rest = match rest {
        ["namespaces", _ns, resource, more @ ..] => [&[*resource], more].concat(),
        other => other.to_vec(),
    };
    let named = rest.len() > 1;
    let watch = request
        .uri()
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match (request.method().as_str(), named) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    };
    let resource = match rest.as_slice() {
        [resource, _name, sub, ..] => format!("{resource}/{sub}"),
        [resource, ..] => (*resource).to_owned(),
        [] => "none".to_owned(),
    };
    RequestLabel { verb, resource }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_prefixed_families() {
        let m = Metrics::new();
        m.reconciled(Duration::from_millis(3), None);
        m.reconciled(Duration::from_millis(3), Some("ApplyFailed"));
        m.phase("ns/a", Some(Phase::Healthy));
        m.phase("ns/b", Some(Phase::Healthy));
        m.phase("ns/b", Some(Phase::RolledBack));
        m.rolled_back(1.5);
        m.api_request(
            &http::Request::get("/api/v1/pods?watch=true&x=1")
                .body(())
                .unwrap(),
        );
        m.api_request(
            &http::Request::patch("/api/v1/namespaces/n/pods/a/status")
                .body(())
                .unwrap(),
        );
        m.api_response(http::StatusCode::FORBIDDEN);
        m.notification("sent");
        m.notification_retry();
        m.api_response(http::StatusCode::OK);
        let text = m.encode().unwrap();
        assert!(
            text.contains("auren_operator_leader 0"),
            "a replica starts as follower"
        );
        m.leading(true);
        let text = m.encode().unwrap();
        assert!(text.contains("auren_operator_leader 1"));
        assert!(text.contains("auren_operator_kube_api_refused_total 1"));
        assert!(text.contains(r#"auren_operator_notifications_total{result="sent"} 1"#));
        assert!(text.contains("auren_operator_notification_retries_total 1"));
        assert!(text.contains(r#"auren_operator_reconciles_total{result="ok"} 1"#));
        assert!(text.contains(r#"auren_operator_reconcile_errors_total{error="ApplyFailed"} 1"#));
        assert!(text.contains(r#"auren_operator_rollout_phase{phase="Healthy"} 1"#));
        assert!(text.contains(r#"auren_operator_rollout_phase{phase="RolledBack"} 1"#));
        assert!(text.contains("auren_operator_rollback_seconds_count 1"));
        assert!(text.contains("auren_operator_reconcile_duration_seconds_count 2"));
        let requests = "auren_operator_kube_api_requests_total";
        assert!(text.contains(&format!(r#"{requests}{{verb="watch",resource="pods"}} 1"#)));
        assert!(text.contains(&format!(
            r#"{requests}{{verb="patch",resource="pods/status"}} 1"#
        )));
    }

    #[test]
    fn requests_are_named_in_rbac_terms() {
        let cases = [
            ("GET", "/api/v1/namespaces/n/secrets/tok", "get", "secrets"),
            (
                "GET",
                "/apis/apps/v1/namespaces/n/deployments?labelSelector=a",
                "list",
                "deployments",
            ),
            (
                "GET",
                "/apis/apps/v1/deployments?watch=true",
                "watch",
                "deployments",
            ),
            (
                "PATCH",
                "/apis/auren.io/v1alpha1/namespaces/n/aurenruntimes/x/status",
                "patch",
                "aurenruntimes/status",
            ),
            (
                "POST",
                "/apis/events.k8s.io/v1/namespaces/n/events",
                "create",
                "events",
            ),
            (
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/n/leases/l",
                "update",
                "leases",
            ),
            (
                "DELETE",
                "/apis/apps/v1/namespaces/n/deployments/d",
                "delete",
                "deployments",
            ),
            ("GET", "/api/v1/namespaces/n", "get", "namespaces"),
            ("GET", "/version", "list", "none"),
        ];
        for (method, uri, verb, resource) in cases {
            let request = http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .unwrap();
            let label = rbac_terms(&request);
            assert_eq!(
                (label.verb, label.resource.as_str()),
                (verb, resource),
                "{method} {uri}"
            );
        }
    }
}
