//! HTTP to the runtime's own pods: `/health` for the readiness gate, `/metrics` for analysis,
//! the admin role API for consumer cutovers. Short timeouts: a slow pod must never hold a
//! reconcile up.

use std::time::Duration;

use auren_contract::{ConsumerRole, RoleChange, RoleStatus, components, health_watch, paths};
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use crate::analysis::{self, Exposition};

/// GETs (health, role, metrics).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A standby switch answers only once the runtime has let a group join in flight finish
/// (≤ 10 s), stored and committed the batch in flight, and seen its partitions revoked
/// (≤ 10 s): the timeout covers both bounds, so a slow but healthy handover is not reported
/// as a failed switch. It holds up only this resource's reconcile.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(25);

/// Idle connections to pods are few and short-lived: at 500 AurenRuntimes the operator talks
/// to 1,000 pods, mostly once per reconcile, and an idle connection costs its buffers.
const IDLE_PER_POD: usize = 1;
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// The HTTP client for pods.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(IDLE_PER_POD)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .build()
        .unwrap_or_default()
}

/// Where one pod's runtime listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddr {
    pub name: String,
    pub ip: String,
    /// The public port (`http`): health, readiness, metrics.
    pub port: i32,
    /// The admin port (`admin`): the role API. No Service exposes it.
    pub admin_port: i32,
}

impl PodAddr {
    fn url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.port)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip, self.admin_port)
    }
}

/// A pod did not answer as the contract says.
#[derive(Debug, thiserror::Error)]
pub enum PodHttpError {
    #[error("{pod}: {source}")]
    Transport { pod: String, source: reqwest::Error },
    #[error("{pod} answered {status}")]
    Status { pod: String, status: u16 },
    #[error("{pod}: unreadable /metrics: {source}")]
    Metrics {
        pod: String,
        source: analysis::ParseError,
    },
    #[error("the pod has no address yet")]
    NoAddress,
}

impl PodHttpError {
    /// The pod refused the admin token.
    pub fn refused_token(&self) -> bool {
        matches!(
            self,
            PodHttpError::Status {
                status: 401 | 403,
                ..
            }
        )
    }
}

fn transport(pod: &PodAddr) -> impl Fn(reqwest::Error) -> PodHttpError + '_ {
    |source| PodHttpError::Transport {
        pod: pod.name.clone(),
        source,
    }
}

fn check(pod: &PodAddr, response: reqwest::Response) -> Result<reqwest::Response, PodHttpError> {
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(PodHttpError::Status {
            pod: pod.name.clone(),
            status: response.status().as_u16(),
        })
    }
}

/// The consumer's role (`GET /admin/consumer/role`).
pub async fn role(
    http: &reqwest::Client,
    pod: &PodAddr,
    token: &str,
) -> Result<ConsumerRole, PodHttpError> {
    let response = http
        .get(pod.admin_url(paths::ADMIN_CONSUMER_ROLE))
        .bearer_auth(token)
        .timeout(READ_TIMEOUT)
        .send()
        .await
        .map_err(transport(pod))?;
    let status: RoleStatus = check(pod, response)?.json().await.map_err(transport(pod))?;
    Ok(status.role)
}

/// Switches the consumer's role; returns once the runtime reports the switch complete.
pub async fn switch_role(
    http: &reqwest::Client,
    pod: &PodAddr,
    token: &str,
    role: ConsumerRole,
) -> Result<RoleStatus, PodHttpError> {
    let response = http
        .put(pod.admin_url(paths::ADMIN_CONSUMER_ROLE))
        .bearer_auth(token)
        .json(&RoleChange { role })
        .timeout(SWITCH_TIMEOUT)
        .send()
        .await
        .map_err(transport(pod))?;
    check(pod, response)?.json().await.map_err(transport(pod))
}

#[derive(Debug, Deserialize)]
struct Health {
    status: String,
    #[serde(default)]
    components: std::collections::BTreeMap<String, Component>,
    /// Names the pod's health state; absent from runtimes that cannot be followed.
    #[serde(default)]
    change: Option<String>,
    #[serde(default)]
    changed_at: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
struct Component {
    status: String,
    #[serde(default)]
    detail: Option<String>,
}

/// What a pod's `/health` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodHealth {
    /// `Ok` only when `/health` says healthy for the pod and for every component, except that
    /// the components of `allowed` (unsafe settings the spec runs on purpose) may be degraded;
    /// otherwise what is not (`kafka degraded: …`), for status messages.
    pub verdict: Result<(), String>,
    /// Shared dependencies (`kafka`, `database`) it reports not healthy.
    pub dependencies_down: Vec<String>,
    /// When the pod's health state last changed, by its own clock.
    pub changed_at: Option<Timestamp>,
}

/// Reads the pod's `/health`.
pub async fn health(http: &reqwest::Client, pod: &PodAddr, allowed: &[&str]) -> PodHealth {
    match read_health(http, pod).await {
        Ok(health) => PodHealth {
            verdict: verdict(&health, allowed),
            dependencies_down: dependencies_down(&health),
            changed_at: health.changed_at,
        },
        Err(problem) => PodHealth {
            verdict: Err(problem),
            dependencies_down: Vec::new(),
            changed_at: None,
        },
    }
}

/// Waits (up to `wait`) for the pod's health state to differ from `known` and names the state
/// it answers with; at once when `known` is `None`. `Ok(None)`: the pod's runtime cannot be
/// followed (its `/health` names no state).
pub async fn next_health_change(
    http: &reqwest::Client,
    pod: &PodAddr,
    known: Option<&str>,
    wait: Duration,
) -> Result<Option<String>, String> {
    let mut request = http.get(pod.url(paths::HEALTH));
    if let Some(known) = known {
        let query = [
            (health_watch::UNLESS, known.to_owned()),
            (health_watch::WAIT, wait.as_secs().to_string()),
        ];
        request = request.query(&query);
    }
    let health = read(request.timeout(wait + READ_TIMEOUT)).await?;
    Ok(health.change)
}

async fn read_health(http: &reqwest::Client, pod: &PodAddr) -> Result<Health, String> {
    read(http.get(pod.url(paths::HEALTH)).timeout(READ_TIMEOUT)).await
}

async fn read(request: reqwest::RequestBuilder) -> Result<Health, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("/health unreachable: {e}"))?;
    // /health answers 503 with the same document when unhealthy.
    response
        .json()
        .await
        .map_err(|e| format!("/health unreadable: {e}"))
}

fn dependencies_down(health: &Health) -> Vec<String> {
    let down = (health.components.iter()).filter(|(name, c)| {
        components::DEPENDENCIES.contains(&name.as_str()) && c.status != "healthy"
    });
    down.map(|(name, _)| name.clone()).collect()
}

fn verdict(health: &Health, allowed: &[&str]) -> Result<(), String> {
    let allowed_degraded =
        |name: &str, c: &Component| c.status == "degraded" && allowed.contains(&name);
    let unhealthy = (health.components.iter())
        .find(|(name, c)| c.status != "healthy" && !allowed_degraded(name, c))
        .map(|(name, c)| match &c.detail {
            Some(detail) => format!("{name} {}: {detail}", c.status),
            None => format!("{name} {}", c.status),
        });
    // Degraded overall only because of what is allowed.
    let explained = health.status == "healthy"
        || (health.status == "degraded"
            && (health.components.iter()).any(|(name, c)| allowed_degraded(name, c)));
    match unhealthy {
        Some(problem) => Err(problem),
        None if !explained => Err(format!("status {}", health.status)),
        None => Ok(()),
    }
}

/// Scrapes and parses the pod's `/metrics`.
pub async fn scrape(http: &reqwest::Client, pod: &PodAddr) -> Result<Exposition, PodHttpError> {
    let response = http
        .get(pod.url(paths::METRICS))
        .timeout(READ_TIMEOUT)
        .send()
        .await
        .map_err(transport(pod))?;
    let text = check(pod, response)?.text().await.map_err(transport(pod))?;
    analysis::parse(&text).map_err(|source| PodHttpError::Metrics {
        pod: pod.name.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_needs_every_component() {
        let parse = |s: &str| serde_json::from_str::<Health>(s).unwrap();
        let good = parse(r#"{"status":"healthy","components":{"kafka":{"status":"healthy"}}}"#);
        let faulty = parse(
            r#"{"status":"degraded","components":{"faults":{"status":"degraded","detail":"error rate 0.2"}}}"#,
        );
        let starting = parse(r#"{"status":"unhealthy","components":{}}"#);
        assert_eq!(verdict(&good, &[]), Ok(()));
        assert_eq!(
            verdict(&faulty, &[]),
            Err("faults degraded: error rate 0.2".into())
        );
        assert_eq!(verdict(&starting, &[]), Err("status unhealthy".into()));
    }

    #[test]
    fn dependencies_down_are_kafka_and_the_database_only() {
        let parse = |s: &str| serde_json::from_str::<Health>(s).unwrap();
        let outage = parse(
            r#"{"status":"unhealthy","components":{"kafka":{"status":"unhealthy"},"database":{"status":"degraded"},"faults":{"status":"degraded"},"circuit_breaker":{"status":"degraded"}}}"#,
        );
        assert_eq!(dependencies_down(&outage), vec!["database", "kafka"]);
        let fine = parse(r#"{"status":"healthy","components":{"kafka":{"status":"healthy"}}}"#);
        assert!(dependencies_down(&fine).is_empty());
    }

    #[test]
    fn an_allowed_unsafe_setting_may_be_degraded_and_nothing_else() {
        let parse = |s: &str| serde_json::from_str::<Health>(s).unwrap();
        let allowed = ["faults"];
        let faulty = parse(
            r#"{"status":"degraded","components":{"faults":{"status":"degraded"},"kafka":{"status":"healthy"}}}"#,
        );
        assert_eq!(verdict(&faulty, &allowed), Ok(()));
        let and_kafka = parse(
            r#"{"status":"degraded","components":{"faults":{"status":"degraded"},"kafka":{"status":"degraded"}}}"#,
        );
        assert_eq!(verdict(&and_kafka, &allowed), Err("kafka degraded".into()));
        let broken =
            parse(r#"{"status":"unhealthy","components":{"faults":{"status":"unhealthy"}}}"#);
        assert!(verdict(&broken, &allowed).is_err());
        let open =
            parse(r#"{"status":"degraded","components":{"webhook_auth":{"status":"degraded"}}}"#);
        assert!(verdict(&open, &allowed).is_err(), "only what is allowed");
    }
}
