//! In-agent HTTP responder for fake-node pods: answers the runtime's HTTP contract
//! ([`auren_contract::paths`]) on the pod's address without any process, so that the
//! operator's readiness gate (`/health`), analysis scrapes (`/metrics`) and consumer cutovers
//! (`/admin/consumer/role`) see a steady, healthy pod.
//!
//! One task per fake pod listening on `<pod IP>:<container port "http", or the first port>`
//! (health, readiness, liveness, metrics) and on `<pod IP>:<container port "admin", or the
//! contract's admin port>` (the admin API only), as the runtime does; started when the
//! supervisor assigns the pod its address and aborted (listeners and open connections with
//! it) when the address is released. Per pod it keeps a few strings and
//! the consumer role; responses are built per request. Connections are closed after each
//! response (no keep-alive), so idle clients hold no buffers in the agent.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use auren_contract::{ConsumerRole, RoleChange, RoleStatus, env, headers, metrics as names, paths};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::images::image_tag;

/// The runtime's version (same workspace version), reported in `/health` and build info.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Largest role-change body read.
const MAX_BODY: usize = 16 * 1024;
/// A connection serves one request; this bounds slow or stuck clients.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between bind attempts while the address is still taken.
const MAX_BIND_RETRY: Duration = Duration::from_secs(10);
/// Failed bind attempts (about 0.35 s) before a warning.
const WARN_AFTER: u32 = 4;
/// Name of the container port of health, readiness and metrics.
const PORT_NAME: &str = "http";
/// Name of the container port of the admin API.
const ADMIN_PORT_NAME: &str = "admin";
/// Buckets of the runtime's request latency histogram.
const LATENCY_BUCKETS: [&str; 14] = [
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0",
    "2.5", "5.0", "10.0",
];
/// Buckets of the runtime's consumer batch-size histogram.
const BATCH_BUCKETS: [&str; 9] = [
    "1.0", "5.0", "10.0", "25.0", "50.0", "100.0", "250.0", "500.0", "1000.0",
];

/// What a fake pod's runtime would be, from its pod spec (literal env values only: the agent
/// reads no Secret or ConfigMap for fake pods).
#[derive(Debug)]
pub struct FakePod {
    key: String,
    release: String,
    release_header: HeaderValue,
    consumer: bool,
    /// `RUN_MODE=api`: the role API answers 409, as the runtime's does without a consumer.
    no_consumer: bool,
    active: AtomicBool,
    started: Instant,
}

/// The two ports a fake pod answers on, as the runtime's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakePorts {
    /// Health, readiness, liveness, metrics.
    pub http: u16,
    /// The admin API.
    pub admin: u16,
}

/// Which of the two listeners a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Public,
    Admin,
}

impl FakePod {
    /// The ports to serve and the pod's runtime settings; `None` when no container has a port.
    pub fn from_pod(pod: &Pod) -> Option<(FakePorts, FakePod)> {
        let containers = &pod.spec.as_ref()?.containers;
        let named = containers.iter().find_map(|c| {
            let ports = c.ports.iter().flatten();
            let mut named = ports.filter(|p| p.name.as_deref() == Some(PORT_NAME));
            named.next().map(|p| (c, p))
        });
        let (container, port) = named.or_else(|| {
            containers
                .iter()
                .find_map(|c| c.ports.as_ref()?.first().map(|p| (c, p)))
        })?;
        let http = port_number(port)?;
        let admin = container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(ADMIN_PORT_NAME))
            .and_then(port_number)
            .unwrap_or(auren_contract::ports::ADMIN);
        let key = format!(
            "{}/{}",
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default()
        );
        Some((FakePorts { http, admin }, FakePod::new(key, container)))
    }

    fn new(key: String, container: &Container) -> Self {
        let image_release = container.image.as_deref().and_then(image_tag);
        let release = literal(container, env::RELEASE)
            .or(image_release)
            .unwrap_or(VERSION)
            .to_owned();
        let release_header =
            HeaderValue::from_str(&release).unwrap_or(HeaderValue::from_static("unknown"));
        let run_mode = literal(container, env::RUN_MODE);
        let role = literal(container, env::CONSUMER_ROLE)
            .and_then(|r| r.parse::<ConsumerRole>().ok())
            .unwrap_or(ConsumerRole::Standby);
        FakePod {
            key,
            release,
            release_header,
            consumer: run_mode == Some(auren_contract::run_mode::CONSUMER),
            no_consumer: run_mode == Some(auren_contract::run_mode::API),
            active: AtomicBool::new(role == ConsumerRole::Active),
            started: Instant::now(),
        }
    }

    fn role(&self) -> ConsumerRole {
        if self.active.load(Ordering::Relaxed) {
            ConsumerRole::Active
        } else {
            ConsumerRole::Standby
        }
    }

    fn mode(&self) -> &'static str {
        if self.consumer {
            auren_contract::run_mode::CONSUMER
        } else {
            auren_contract::run_mode::API
        }
    }
}

fn port_number(port: &ContainerPort) -> Option<u16> {
    u16::try_from(port.container_port).ok().filter(|p| *p != 0)
}

/// The last literal value of an env var (later entries win, as in Kubernetes).
fn literal<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container
        .env
        .iter()
        .flatten()
        .rev()
        .find(|v| v.name == name)
        .and_then(|v| v.value.as_deref())
}

/// A running responder; dropping it aborts the listener and every open connection.
#[derive(Debug)]
pub struct Responder {
    task: JoinHandle<()>,
}

impl Responder {
    /// Binds both ports of `ip` (retrying while one is taken, e.g. by the previous owner's
    /// listener that is still being aborted) and serves `pod` there until dropped.
    pub fn start(ip: IpAddr, ports: FakePorts, pod: FakePod) -> Self {
        let task = tokio::spawn(async move {
            let (public, admin) = (
                SocketAddr::new(ip, ports.http),
                SocketAddr::new(ip, ports.admin),
            );
            let public = bind(public, &pod.key).await;
            let admin = bind(admin, &pod.key).await;
            tracing::debug!(pod = %pod.key, %ip, ?ports, "fake pod responder listening");
            let pod = Arc::new(pod);
            tokio::join!(serve(public, pod.clone()), serve_admin(admin, pod));
        });
        Responder { task }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn bind(addr: SocketAddr, key: &str) -> TcpListener {
    let mut delay = Duration::from_millis(50);
    let mut failures = 0_u32;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => {
                if failures >= WARN_AFTER {
                    tracing::info!(pod = %key, %addr, "fake pod responder bound");
                }
                return listener;
            }
            Err(e) => {
                failures += 1;
                // A released address is free again once its old listener task is aborted,
                // a few milliseconds later: only a lasting failure is worth a warning.
                if failures == WARN_AFTER {
                    tracing::warn!(pod = %key, %addr, error = %e, "fake pod responder cannot bind; retrying");
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_BIND_RETRY);
            }
        }
    }
}

/// Serves `pod`'s public routes on `listener` forever (until the task is aborted).
pub async fn serve(listener: TcpListener, pod: Arc<FakePod>) {
    serve_side(listener, pod, Side::Public).await;
}

/// Serves `pod`'s admin API on `listener` forever (until the task is aborted).
pub async fn serve_admin(listener: TcpListener, pod: Arc<FakePod>) {
    serve_side(listener, pod, Side::Admin).await;
}

async fn serve_side(listener: TcpListener, pod: Arc<FakePod>, side: Side) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, pod.clone(), side));
                }
                Err(e) => {
                    tracing::debug!(pod = %pod.key, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

async fn connection(stream: TcpStream, pod: Arc<FakePod>, side: Side) {
    let service = service_fn(move |request| {
        let pod = pod.clone();
        async move { Ok::<_, Infallible>(answer(&pod, side, request).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
}

type Answer = Response<Full<Bytes>>;

enum Route {
    Health,
    Readiness,
    Live,
    Metrics,
    Role,
}

/// The admin API on the admin port only, everything else on the public port only: 404
/// otherwise, as the runtime answers.
async fn answer(pod: &FakePod, side: Side, request: Request<Incoming>) -> Answer {
    let route = match (side, request.uri().path()) {
        (Side::Public, paths::HEALTH) => Route::Health,
        (Side::Public, paths::READINESS) => Route::Readiness,
        (Side::Public, paths::LIVE) => Route::Live,
        (Side::Public, paths::METRICS) => Route::Metrics,
        (Side::Admin, paths::ADMIN_CONSUMER_ROLE) => Route::Role,
        (_, other) => {
            let detail = format!("no route {other}");
            return error(pod, StatusCode::NOT_FOUND, "not_found", &detail);
        }
    };
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    match route {
        Route::Health if get => json_answer(pod, StatusCode::OK, &health(pod)),
        Route::Readiness if get => {
            let body = json!({"ready": true, "draining": false});
            json_answer(pod, StatusCode::OK, &body)
        }
        Route::Live if get => json_answer(pod, StatusCode::OK, &json!({"live": true})),
        Route::Metrics if get => respond(
            pod,
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics(pod).into(),
        ),
        Route::Role if get => get_role(pod, request.headers()),
        Route::Role if request.method() == Method::PUT => put_role(pod, request).await,
        Route::Role => method_not_allowed(pod, "GET,HEAD,PUT"),
        _ => method_not_allowed(pod, "GET,HEAD"),
    }
}

fn respond(pod: &FakePod, status: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        HeaderName::from_static(headers::RELEASE),
        pod.release_header.clone(),
    );
    response
}

fn json_answer<T: Serialize>(pod: &FakePod, status: StatusCode, body: &T) -> Answer {
    match serde_json::to_vec(body) {
        Ok(bytes) => respond(pod, status, "application/json", bytes.into()),
        Err(_) => respond(
            pod,
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Bytes::new(),
        ),
    }
}

/// The runtime's error document: `{"error": code, "detail": text}`.
fn error(pod: &FakePod, status: StatusCode, code: &str, detail: &str) -> Answer {
    json_answer(pod, status, &json!({"error": code, "detail": detail}))
}

fn method_not_allowed(pod: &FakePod, allow: &'static str) -> Answer {
    let mut response = respond(
        pod,
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain",
        Bytes::new(),
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// Same fields, in the same order, as the runtime's `HealthReport`.
#[derive(Serialize)]
struct HealthReport<'a> {
    status: &'static str,
    version: &'static str,
    release: &'a str,
    mode: &'static str,
    checked_at: String,
    components: serde_json::Value,
    metrics: serde_json::Value,
}

/// Every component the runtime checks in this mode, healthy.
fn health(pod: &FakePod) -> HealthReport<'_> {
    let checked = json!({"status": "healthy", "latency_ms": 0.0});
    let components = if pod.consumer {
        let role = format!("role {}", pod.role().as_str());
        json!({
            "consumer": {"status": "healthy", "detail": role},
            "database": checked,
            "kafka": checked,
        })
    } else {
        json!({"circuit_breaker": {"status": "healthy"}, "kafka": checked})
    };
    let metrics = json!({
        "events_accepted": 0.0,
        "events_dead_lettered": 0.0,
        "events_stored": 0.0,
        "uptime_seconds": pod.started.elapsed().as_secs_f64(),
    });
    HealthReport {
        status: "healthy",
        version: VERSION,
        release: &pod.release,
        mode: pod.mode(),
        checked_at: Timestamp::now().to_string(),
        components,
        metrics,
    }
}

/// Prometheus label value escaping.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The runtime's metric families at zero (OpenMetrics text, as prometheus-client writes it);
/// only `consumer_active` follows the pod's role.
fn metrics(pod: &FakePod) -> String {
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[String]| {
        let _ = writeln!(out, "# HELP {name} {help}.\n# TYPE {name} {kind}");
        for sample in samples {
            let _ = writeln!(out, "{sample}");
        }
    };
    let requests = names::HTTP_REQUESTS;
    family(
        requests,
        "counter",
        "HTTP requests by route, method and status",
        &[format!(
            "{requests}_total{{route=\"{}\",method=\"GET\",status=\"200\"}} 0",
            paths::HEALTH
        )],
    );
    family(
        names::HTTP_REQUEST_DURATION,
        "histogram",
        "HTTP request latency",
        &histogram(
            names::HTTP_REQUEST_DURATION,
            &format!("route=\"{}\"", paths::HEALTH),
            &LATENCY_BUCKETS,
        ),
    );
    for (name, help) in [
        (
            names::EVENTS_ACCEPTED,
            "Events acknowledged by Kafka and answered 202",
        ),
        (names::EVENTS_STORED, "Events newly stored in PostgreSQL"),
        (
            names::EVENTS_DEAD_LETTERED,
            "Records sent to the dead-letter topic",
        ),
    ] {
        family(name, "counter", help, &[format!("{name}_total 0")]);
    }
    let failed = names::EVENTS_FAILED;
    family(
        failed,
        "counter",
        "Events that failed, by stage",
        &[format!(
            "{failed}_total{{stage=\"{}\"}} 0",
            if pod.consumer { "store" } else { "produce" }
        )],
    );
    let lag = names::CONSUMER_LAG;
    family(
        lag,
        "gauge",
        "Consumer lag in records per partition",
        &[format!("{lag}{{partition=\"0\"}} 0")],
    );
    family(
        names::CONSUMER_BATCH_SIZE,
        "histogram",
        "Events per stored batch",
        &histogram(names::CONSUMER_BATCH_SIZE, "", &BATCH_BUCKETS),
    );
    let active = names::CONSUMER_ACTIVE;
    family(
        active,
        "gauge",
        "1 when the consumer is active, 0 on standby",
        &[format!(
            "{active} {}",
            u8::from(pod.consumer && pod.role() == ConsumerRole::Active)
        )],
    );
    let breaker = names::CIRCUIT_BREAKER_STATE;
    family(
        breaker,
        "gauge",
        "Circuit breaker: 0 closed, 1 half-open, 2 open",
        &[format!("{breaker}{{dependency=\"kafka\"}} 0")],
    );
    let pool = names::DB_POOL_CONNECTIONS;
    family(
        pool,
        "gauge",
        "PostgreSQL pool connections by state",
        &[
            format!("{pool}{{state=\"idle\"}} 0"),
            format!("{pool}{{state=\"in_use\"}} 0"),
        ],
    );
    let build = names::BUILD_INFO;
    family(
        build,
        "gauge",
        "Build and release of this process",
        &[format!(
            "{build}{{version=\"{VERSION}\",release=\"{}\",mode=\"{}\"}} 1",
            escape(&pod.release),
            pod.mode()
        )],
    );
    let ready = names::READY;
    family(
        ready,
        "gauge",
        "1 while the process reports ready",
        &[format!("{ready} 1")],
    );
    out.push_str("# EOF\n");
    out
}

/// Sum, count and buckets of an empty histogram; `labels` go before `le`.
fn histogram(name: &str, labels: &str, buckets: &[&str]) -> Vec<String> {
    let set = if labels.is_empty() {
        String::new()
    } else {
        format!("{{{labels}}}")
    };
    let sep = if labels.is_empty() { "" } else { "," };
    let mut lines = vec![
        format!("{name}_sum{set} 0.0"),
        format!("{name}_count{set} 0"),
    ];
    for le in buckets.iter().chain(&["+Inf"]) {
        lines.push(format!("{name}_bucket{{{labels}{sep}le=\"{le}\"}} 0"));
    }
    lines
}

/// The runtime needs `Authorization: Bearer <ADMIN_TOKEN>`; the fake cannot read the Secret,
/// so any non-empty bearer token passes.
fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
        })
}

fn unauthorized(pod: &FakePod) -> Answer {
    let detail = "missing or wrong admin token";
    error(pod, StatusCode::UNAUTHORIZED, "unauthorized", detail)
}

fn no_consumer(pod: &FakePod) -> Answer {
    let detail = "no consumer in api mode";
    error(pod, StatusCode::CONFLICT, "conflict", detail)
}

fn role_status(pod: &FakePod) -> Answer {
    let status = RoleStatus {
        role: pod.role(),
        stored: 0,
    };
    json_answer(pod, StatusCode::OK, &status)
}

fn get_role(pod: &FakePod, headers: &HeaderMap) -> Answer {
    if !authorized(headers) {
        return unauthorized(pod);
    }
    if pod.no_consumer {
        return no_consumer(pod);
    }
    role_status(pod)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Switches at once (the fake has no batch in flight) and answers the new status.
async fn put_role(pod: &FakePod, request: Request<Incoming>) -> Answer {
    if !authorized(request.headers()) {
        return unauthorized(pod);
    }
    if !is_json(request.headers()) {
        let detail = "Expected request with `Content-Type: application/json`";
        return error(
            pod,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
            detail,
        );
    }
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let detail = format!("body larger than {MAX_BODY} bytes");
            return error(
                pod,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &detail,
            );
        }
    };
    let change: RoleChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(e) => {
            let detail = format!("Failed to deserialize the JSON body into the target type: {e}");
            return error(
                pod,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_payload",
                &detail,
            );
        }
    };
    if pod.no_consumer {
        return no_consumer(pod);
    }
    let before = pod.role();
    pod.active
        .store(change.role == ConsumerRole::Active, Ordering::Relaxed);
    if before != change.role {
        tracing::info!(pod = %pod.key, role = change.role.as_str(), "fake consumer role switched");
    }
    role_status(pod)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use auren_operator::analysis::{self, PodWindow, Window};
    use serde_json::Value;

    use super::*;

    /// High in the fake pod pool: the agent allocates the lowest free address first, so a
    /// running agent is unlikely to hold these. Port 0: the kernel picks a free one.
    const TEST_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 31, 250);

    fn pod(env: Value, ports: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [
                {"name": "sidecar", "image": "auren/shell:1"},
                {"name": "runtime", "image": "auren/runtime:v7", "env": env, "ports": ports},
            ]},
        }))
        .unwrap()
    }

    fn consumer(role: Option<&str>) -> FakePod {
        let mut env = vec![
            json!({"name": "RUN_MODE", "value": "consumer"}),
            json!({"name": "AUREN_RELEASE", "value": "rev1"}),
            json!({"name": "ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}),
        ];
        if let Some(role) = role {
            env.push(json!({"name": "CONSUMER_ROLE", "value": role}));
        }
        let ports = json!([{"name": "http", "containerPort": 8000}]);
        FakePod::from_pod(&pod(Value::from(env), ports)).unwrap().1
    }

    /// Serves `pod` on two free ports; the public and the admin base URL.
    async fn start(pod: FakePod) -> (String, String, JoinHandle<()>) {
        let public = TcpListener::bind((TEST_IP, 0)).await.unwrap();
        let admin = TcpListener::bind((TEST_IP, 0)).await.unwrap();
        let base = format!("http://{}", public.local_addr().unwrap());
        let admin_base = format!("http://{}", admin.local_addr().unwrap());
        let pod = Arc::new(pod);
        let task = tokio::spawn(async move {
            tokio::join!(serve(public, pod.clone()), serve_admin(admin, pod));
        });
        (base, admin_base, task)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    }

    #[test]
    fn port_and_settings_come_from_the_pod_spec() {
        let ports = json!([{"name": "debug", "containerPort": 9000}, {"name": "http", "containerPort": 8000}]);
        let (ports, fake) = FakePod::from_pod(&pod(json!([]), ports)).unwrap();
        assert_eq!(ports.http, 8000, "the port named http wins");
        assert_eq!(ports.admin, 8001, "the contract's admin port by default");
        assert_eq!(fake.release, "v7", "release defaults to the image tag");
        assert_eq!(fake.role(), ConsumerRole::Standby);
        assert_eq!(fake.mode(), "api");
        assert!(!fake.consumer && !fake.no_consumer);
        assert_eq!(fake.key, "ns/p");

        let ports = json!([{"containerPort": 9000}, {"name": "admin", "containerPort": 9001}]);
        let env = json!([
            {"name": "CONSUMER_ROLE", "value": "standby"},
            {"name": "CONSUMER_ROLE", "value": "active"},
            {"name": "RUN_MODE", "value": "api"},
        ]);
        let (ports, fake) = FakePod::from_pod(&pod(env, ports)).unwrap();
        assert_eq!(ports.http, 9000, "otherwise the first port");
        assert_eq!(ports.admin, 9001, "the port named admin");
        assert_eq!(
            fake.role(),
            ConsumerRole::Active,
            "the last definition wins"
        );
        assert!(fake.no_consumer);

        assert!(FakePod::from_pod(&pod(json!([]), json!([]))).is_none());
        assert!(FakePod::from_pod(&pod(json!([]), json!([{"containerPort": 70000}]))).is_none());
        assert_eq!(consumer(Some("bogus")).role(), ConsumerRole::Standby);
    }

    #[tokio::test]
    async fn health_probes_and_metrics_read_as_the_operator_reads_them() {
        let (base, admin, task) = start(consumer(None)).await;
        let http = client();

        let response = http.get(format!("{base}/health")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["x-auren-release"], "rev1");
        let health: Value = response.json().await.unwrap();
        let keys: Vec<&str> = health
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = vec![
            "status",
            "version",
            "release",
            "mode",
            "checked_at",
            "components",
            "metrics",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(health["status"], "healthy");
        assert_eq!(health["release"], "rev1");
        assert_eq!(health["mode"], "consumer");
        assert_eq!(health["version"], VERSION);
        let components = health["components"].as_object().unwrap();
        assert_eq!(components.len(), 3, "{components:?}");
        assert!(components.values().all(|c| c["status"] == "healthy"));
        assert_eq!(components["consumer"]["detail"], "role standby");
        assert!(health["metrics"]["uptime_seconds"].is_f64());

        for (path, body) in [
            ("/readiness", json!({"ready": true, "draining": false})),
            ("/live", json!({"live": true})),
        ] {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.json::<Value>().await.unwrap(), body, "{path}");
        }

        let response = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let exposition = analysis::parse(&text).unwrap();
        for name in [
            format!("{}_total", names::HTTP_REQUESTS),
            format!("{}_bucket", names::HTTP_REQUEST_DURATION),
            format!("{}_total", names::EVENTS_STORED),
            format!("{}_bucket", names::CONSUMER_BATCH_SIZE),
            names::DB_POOL_CONNECTIONS.to_owned(),
            names::BUILD_INFO.to_owned(),
        ] {
            assert!(exposition.has(&name), "{name} missing:\n{text}");
        }
        let window = Window {
            pods: vec![PodWindow {
                start: Some(exposition.clone()),
                end: exposition,
            }],
        };
        assert_eq!(window.error_ratio(), None, "no requests, no ratio");
        assert_eq!(window.latency_quantile(0.99), None);
        assert_eq!(window.consumer_lag(), Some(0.0));
        assert_eq!(window.dead_lettered(), Some(0.0));
        assert_eq!(window.failed_events(), Some(0.0));
        assert_eq!(window.breakers_open(), Some(0.0));
        assert!(text.contains("auren_runtime_consumer_active 0\n"), "{text}");

        let missing = http.get(format!("{base}/nope")).send().await.unwrap();
        assert_eq!(missing.status(), 404);
        let body: Value = missing.json().await.unwrap();
        assert_eq!(body["error"], "not_found");
        let wrong = http.post(format!("{base}/health")).send().await.unwrap();
        assert_eq!(wrong.status(), 405);
        let on_admin = http.get(format!("{admin}/health")).send().await.unwrap();
        assert_eq!(
            on_admin.status(),
            404,
            "the admin port serves the admin API only"
        );
        let role = format!("{base}{}", paths::ADMIN_CONSUMER_ROLE);
        let on_public = http.get(role).bearer_auth("t").send().await.unwrap();
        assert_eq!(on_public.status(), 404, "no admin API on the public port");
        task.abort();
    }

    #[tokio::test]
    async fn role_switches_persist_and_need_a_bearer_token() {
        let (base, admin, task) = start(consumer(None)).await;
        let http = client();
        let url = format!("{admin}{}", paths::ADMIN_CONSUMER_ROLE);
        let active = RoleChange {
            role: ConsumerRole::Active,
        };

        let anonymous = http.get(&url).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let body: Value = anonymous.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized");
        let anonymous = http.put(&url).json(&active).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let empty = http.get(&url).bearer_auth("").send().await.unwrap();
        assert_eq!(empty.status(), 401);

        let lower = http.get(&url).header("authorization", "bearer t").send();
        assert_eq!(lower.await.unwrap().status(), 200, "the scheme in any case");
        let get = || http.get(&url).bearer_auth("any-token").send();
        let status: RoleStatus = get().await.unwrap().json().await.unwrap();
        assert_eq!(status.role, ConsumerRole::Standby);

        let response = http
            .put(&url)
            .bearer_auth("any-token")
            .json(&active)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let status: RoleStatus = response.json().await.unwrap();
        assert_eq!(
            status,
            RoleStatus {
                role: ConsumerRole::Active,
                stored: 0
            }
        );
        let status: RoleStatus = get().await.unwrap().json().await.unwrap();
        assert_eq!(status.role, ConsumerRole::Active, "the switch persists");
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("auren_runtime_consumer_active 1\n"));
        let health: Value = http
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["components"]["consumer"]["detail"], "role active");

        let bad = http
            .put(&url)
            .bearer_auth("t")
            .json(&json!({"role": "both"}))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 422);
        let status: RoleStatus = get().await.unwrap().json().await.unwrap();
        assert_eq!(
            status.role,
            ConsumerRole::Active,
            "a bad body changes nothing"
        );
        task.abort();

        let (_, admin, task) = start(consumer(Some("active"))).await;
        let url = format!("{admin}{}", paths::ADMIN_CONSUMER_ROLE);
        let status: RoleStatus = http
            .get(&url)
            .bearer_auth("t")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            status.role,
            ConsumerRole::Active,
            "CONSUMER_ROLE is the start"
        );
        task.abort();
    }

    #[tokio::test]
    async fn api_mode_pods_have_no_consumer_role() {
        let env = json!([{"name": "RUN_MODE", "value": "api"}]);
        let ports = json!([{"name": "http", "containerPort": 8000}]);
        let (_, fake) = FakePod::from_pod(&pod(env, ports)).unwrap();
        let (base, admin, task) = start(fake).await;
        let http = client();
        let url = format!("{admin}{}", paths::ADMIN_CONSUMER_ROLE);
        let response = http.get(&url).bearer_auth("t").send().await.unwrap();
        assert_eq!(response.status(), 409);
        let health: Value = http
            .get(format!("{base}/health"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["mode"], "api");
        assert_eq!(health["status"], "healthy");
        let components = health["components"].as_object().unwrap();
        let names: Vec<&str> = components.keys().map(String::as_str).collect();
        assert_eq!(names, ["circuit_breaker", "kafka"]);
        task.abort();
    }

    #[tokio::test]
    async fn dropping_the_responder_unbinds_the_address() {
        let free = || async {
            let probe = TcpListener::bind((TEST_IP, 0)).await.unwrap();
            probe.local_addr().unwrap().port()
        };
        let ports = FakePorts {
            http: free().await,
            admin: free().await,
        };
        let ip = Ipv4Addr::new(127, 0, 31, 251);
        let addr = SocketAddr::from((ip, ports.http));
        let admin_addr = SocketAddr::from((ip, ports.admin));
        let responder = Responder::start(ip.into(), ports, consumer(None));
        let http = client();
        let live = format!("http://{addr}/live");
        let mut answered = false;
        for _ in 0..100 {
            if http.get(&live).send().await.is_ok() {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(answered, "the responder never answered on {addr}");

        // A second responder on the same address waits for the first to go away.
        let next = Responder::start(ip.into(), ports, consumer(Some("active")));
        drop(responder);
        let role = format!("http://{admin_addr}{}", paths::ADMIN_CONSUMER_ROLE);
        let mut took_over = false;
        for _ in 0..200 {
            let answer = http.get(&role).bearer_auth("t").send().await;
            if let Ok(response) = answer
                && let Ok(status) = response.json::<RoleStatus>().await
                && status.role == ConsumerRole::Active
            {
                took_over = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(took_over, "the second responder never took over {addr}");

        drop(next);
        let mut refused = false;
        for _ in 0..100 {
            if TcpStream::connect(addr).await.is_err()
                && TcpStream::connect(admin_addr).await.is_err()
            {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "{addr} still accepts connections after the drop");
    }
}
